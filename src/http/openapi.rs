//! The OpenAPI 3.1 document of the REST routes, made from the same descriptors and
//! `google.api.http` rules the transcoder routes by, so it cannot drift from them. Schemas
//! follow the proto3 JSON mapping the routes speak: camelCase names, 64-bit integers and
//! well-known types as strings, enums by name.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};

use super::rest::{Body, Rule, Segment};

/// The document for `rules`.
pub(super) fn document(rules: &[Rule]) -> Json {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let mut seen = std::collections::HashMap::new();
    for rule in rules {
        let template = template_of(rule);
        let path_fields: Vec<&str> = rule
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Field(f) => Some(f.as_str()),
                Segment::Literal(_) => None,
            })
            .collect();
        let mut parameters: Vec<Json> = path_fields
            .iter()
            .map(|f| {
                json!({"name": param_name(f), "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        let body_field = match &rule.body {
            Body::Field(f) => Some(f.as_str()),
            _ => None,
        };
        if rule.body != Body::Whole {
            for field in rule.input.fields() {
                let in_path = path_fields
                    .iter()
                    .any(|p| p.split('.').next() == Some(field.name()));
                if in_path || body_field == Some(field.name()) {
                    continue;
                }
                if let Some(schema) = query_schema(&field) {
                    parameters.push(json!({
                        "name": field.json_name(),
                        "in": "query",
                        "schema": schema,
                        "explode": true,
                    }));
                }
            }
        }
        let (service, method) = rule
            .grpc_path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or_default();
        let service = service.rsplit('.').next().unwrap_or(service);
        // A second binding of the same RPC gets a numbered id.
        let count = seen.entry(rule.grpc_path.clone()).or_insert(0);
        *count += 1;
        let operation_id = match *count {
            1 => format!("{service}_{method}"),
            n => format!("{service}_{method}{n}"),
        };
        let mut operation = json!({
            "operationId": operation_id,
            "tags": [service],
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": reference(&rule.output, &mut schemas)}}
                },
                "default": {
                    "description": "An error: google.rpc.Status as JSON",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }
            }
        });
        let body_schema = match &rule.body {
            Body::None => None,
            Body::Whole => Some(reference(&rule.input, &mut schemas)),
            Body::Field(f) => rule
                .input
                .get_field_by_name(f)
                .map(|field| field_schema(&field, &mut schemas)),
        };
        if let Some(schema) = body_schema {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema}}
            });
        }
        let item = paths
            .entry(template)
            .or_insert_with(|| Json::Object(Map::new()));
        item[rule.method.as_str().to_ascii_lowercase()] = operation;
    }
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "properties": {"error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer"},
                    "status": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object"}}
                }
            }}
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ticketd",
            "version": "v1",
            "description": "Support tickets over REST/JSON: every unary RPC of ticketd's gRPC API at the path its google.api.http rule names."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        }
    })
}

/// A path parameter's name in the document: the field path with `_` for `.`
/// (`ticket.id` → `ticket_id`), which OpenAPI tools read as a plain name.
fn param_name(field: &str) -> String {
    field.replace('.', "_")
}

fn template_of(rule: &Rule) -> String {
    let segments: Vec<String> = rule
        .segments
        .iter()
        .map(|s| match s {
            Segment::Literal(l) => l.clone(),
            Segment::Field(f) => format!("{{{}}}", param_name(f)),
        })
        .collect();
    let verb = rule
        .verb
        .as_ref()
        .map(|v| format!(":{v}"))
        .unwrap_or_default();
    format!("/{}{verb}", segments.join("/"))
}

/// A `$ref` to the message's schema, adding it (and what it refers to) to `schemas`.
fn reference(message: &MessageDescriptor, schemas: &mut Map<String, Json>) -> Json {
    if let Some(known) = well_known(message) {
        return known;
    }
    let name = message.full_name().to_owned();
    if !schemas.contains_key(&name) {
        // Placed first, so a message that refers to itself finds its name taken.
        schemas.insert(name.clone(), Json::Null);
        let mut properties = Map::new();
        for field in message.fields() {
            let schema = field_schema(&field, schemas);
            properties.insert(field.json_name().to_owned(), schema);
        }
        schemas.insert(
            name.clone(),
            json!({"type": "object", "properties": properties, "additionalProperties": false}),
        );
    }
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Well-known types in their JSON forms.
fn well_known(message: &MessageDescriptor) -> Option<Json> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"})
        }
        "google.protobuf.FieldMask" => json!({"type": "string"}),
        _ => return None,
    })
}

fn scalar_schema(kind: &Kind, schemas: &mut Map<String, Json>) -> Json {
    match kind {
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "minimum": 0}),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": ["string", "integer"], "pattern": "^-?[0-9]+$"})
        }
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Enum(e) => {
            let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
            json!({"type": "string", "enum": names})
        }
        Kind::Message(m) => reference(m, schemas),
    }
}

fn field_schema(field: &FieldDescriptor, schemas: &mut Map<String, Json>) -> Json {
    if field.is_map()
        && let Kind::Message(entry) = field.kind()
    {
        let value = entry.map_entry_value_field().kind();
        return json!({"type": "object", "additionalProperties": scalar_schema(&value, schemas)});
    }
    let item = scalar_schema(&field.kind(), schemas);
    if field.is_list() {
        json!({"type": "array", "items": item})
    } else {
        item
    }
}

/// A query parameter's schema: scalars, enums, lists of them, and well-known types read
/// from text; other messages are not query parameters.
fn query_schema(field: &FieldDescriptor) -> Option<Json> {
    let mut scratch = Map::new();
    let item = match field.kind() {
        Kind::Message(m) => well_known(&m)?,
        kind => scalar_schema(&kind, &mut scratch),
    };
    if field.is_map() {
        return None;
    }
    Some(if field.is_list() {
        json!({"type": "array", "items": item})
    } else {
        item
    })
}
