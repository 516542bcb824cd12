//! REST/JSON, driven with a real HTTP client: the walk-through (create, read, list with a
//! filter, update with an etag, reply, note, the feed), admin resources, and errors with
//! the HTTP statuses of AIP-193.

use serde_json::{Value, json};
use ticketd::grpc::pb;

use crate::harness::{Backend, TestApp, spawn_app};

struct Rest<'a> {
    app: &'a TestApp,
    key: String,
}

impl Rest<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("http://{}{path}", self.app.addr))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("a response");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        (status, value)
    }
}

fn rest(app: &TestApp) -> Rest<'_> {
    Rest {
        app,
        key: app.admin_secret.clone(),
    }
}

pub async fn the_walk_through_works_over_rest(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = rest(&app);
    use reqwest::Method as M;
    let (status, created) = api
        .call(
            M::POST,
            "/v1/tickets",
            Some(json!({
                "subject": "Printer on fire",
                "description": "Smoke everywhere",
                "priority": "PRIORITY_HIGH",
                "tags": ["hardware"],
                "contact": {"externalId": "crm-1", "name": "Ada", "email": "ada@example.com"}
            })),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let ticket = &created["ticket"];
    let id = ticket["id"].as_str().unwrap().to_owned();
    assert_eq!(ticket["status"], "TICKET_STATUS_OPEN");
    assert_eq!(ticket["number"], "1", "int64 as a string");
    assert_eq!(ticket["etag"], "1");

    let (status, fetched) = api.call(M::GET, &format!("/v1/tickets/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["ticket"]["subject"], "Printer on fire");
    let (status, by_number) = api.call(M::GET, "/v1/ticketNumbers/1", None).await;
    assert_eq!(status, 200);
    assert_eq!(by_number["ticket"]["id"], id.as_str());

    let (status, low) = api
        .call(
            M::POST,
            "/v1/tickets",
            Some(
                json!({"subject": "Low toner", "description": "5%", "priority": "PRIORITY_LOW",
                        "contact": {"externalId": "crm-2"}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{low}");
    let (_, listed) = api
        .call(
            M::GET,
            "/v1/tickets?filter=priority%20%3E%3D%20HIGH&pageSize=10",
            None,
        )
        .await;
    let subjects: Vec<&str> = listed["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, vec!["Printer on fire"]);
    let (_, counted) = api
        .call(M::GET, "/v1/tickets:count?filter=tags%3Ahardware", None)
        .await;
    assert_eq!(counted["count"], "1");

    // PATCH with the mask and the etag in the query; the same etag again is stale.
    let path = format!("/v1/tickets/{id}?updateMask=status,priority&etag=1");
    let (status, updated) = api
        .call(
            M::PATCH,
            &path,
            Some(json!({"status": "TICKET_STATUS_IN_PROGRESS", "priority": "PRIORITY_URGENT"})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["ticket"]["status"], "TICKET_STATUS_IN_PROGRESS");
    assert_eq!(updated["ticket"]["priority"], "PRIORITY_URGENT");
    assert_eq!(updated["ticket"]["etag"], "2");
    let (status, stale) = api
        .call(
            M::PATCH,
            &format!("/v1/tickets/{id}?updateMask=status&etag=1"),
            Some(json!({"status": "TICKET_STATUS_WAITING"})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(stale["error"]["status"], "ABORTED");

    // Custom methods, and the feed.
    let (status, replied) = api
        .call(
            M::POST,
            &format!("/v1/tickets/{id}:reply"),
            Some(json!({"body": "We are on our way.", "channel": "CHANNEL_EMAIL"})),
        )
        .await;
    assert_eq!(status, 200, "{replied}");
    let (status, _) = api
        .call(
            M::POST,
            &format!("/v1/tickets/{id}:addNote"),
            Some(json!({"body": "Called the fire brigade"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, feed) = api
        .call(M::GET, &format!("/v1/tickets/{id}/activity"), None)
        .await;
    let kinds: Vec<&str> = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.ends_with(&["EVENT_TYPE_REPLY_ADDED", "EVENT_TYPE_NOTE_ADDED"]),
        "{kinds:?}"
    );

    // An admin resource: create, list, delete.
    let (status, view) = api
        .call(
            M::POST,
            "/v1/views",
            Some(json!({"name": "Urgent", "filter": "priority = URGENT"})),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let view_id = view["view"]["id"].as_str().unwrap().to_owned();
    let (_, views) = api.call(M::GET, "/v1/views?includeCounts=true", None).await;
    let urgent = views["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == view_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(urgent["count"], "1");
    let (status, _) = api
        .call(M::DELETE, &format!("/v1/views/{view_id}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, gone) = api
        .call(M::GET, &format!("/v1/views/{view_id}"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(gone["error"]["status"], "NOT_FOUND");
}

pub async fn rest_errors_carry_their_status_and_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let api = rest(&app);
    use reqwest::Method as M;
    let anonymous = Rest {
        app: &app,
        key: String::new(),
    };
    let (status, body) = anonymous.call(M::GET, "/v1/tickets", None).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );

    let (status, body) = api.call(M::GET, "/v1/tickets/not-a-uuid", None).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"][0]["fieldViolations"][0]["field"],
        "id"
    );
    let (status, body) = api
        .call(M::POST, "/v1/tickets", Some(json!({"subject": ""})))
        .await;
    assert_eq!(status, 400, "{body}");
    // A value that does not parse is refused naming its field.
    let field = |body: &Value| {
        body["error"]["details"][0]["fieldViolations"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (status, body) = api
        .call(M::POST, "/v1/tickets", Some(json!({"subjekt": "typo"})))
        .await;
    assert_eq!(status, 400, "an unknown field is refused");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("subjekt"),
        "{body}"
    );
    let (status, body) = api.call(M::GET, "/v1/tickets?pageSize=lots", None).await;
    assert_eq!(
        (status, field(&body)),
        (400, "page_size".to_owned()),
        "{body}"
    );
    let (status, body) = api
        .call(
            M::POST,
            "/v1/tickets",
            Some(json!({"subject": "s", "priority": "NOPE", "contact": {"externalId": "c"}})),
        )
        .await;
    assert_eq!(
        (status, field(&body)),
        (400, "priority".to_owned()),
        "{body}"
    );
    let (status, body) = api
        .call(
            M::POST,
            "/v1/tickets",
            Some(json!({"subject": "s", "contact": {"externalId": "c", "vip": "very"}})),
        )
        .await;
    assert_eq!(
        (status, field(&body)),
        (400, "contact.vip".to_owned()),
        "{body}"
    );
    let (status, _) = api.call(M::GET, "/v1/tickets?colour=red", None).await;
    assert_eq!(status, 400);
    // The query cannot override what the path or the body sets.
    let (status, body) = api
        .call(
            M::PATCH,
            "/v1/tickets/01a22e0f-2569-720b-9596-9cedc21798bc?ticket.subject=x&updateMask=subject",
            Some(json!({"subject": "y"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api.call(M::GET, "/v1/tickets/", None).await;
    assert_eq!(status, 404, "an empty id names no ticket");
    // A body over its method's bound (a view is a small message, 64 KiB over gRPC).
    let (status, body) = api
        .call(
            M::POST,
            "/v1/views",
            Some(json!({"name": "x".repeat(200 * 1024)})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (413, Some("RESOURCE_EXHAUSTED"))
    );
    assert_eq!(
        body["error"]["code"], 413,
        "the JSON says the status it came with"
    );
    let (status, body) = api.call(M::GET, "/v1/nowhere", None).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _) = api.call(M::DELETE, "/v1/tickets", None).await;
    assert_eq!(status, 404, "no rule for DELETE on the collection");
    let (status, _) = api
        .call(
            M::GET,
            "/v1/tickets/01a22e0f-2569-720b-9596-9cedc21798bc",
            None,
        )
        .await;
    assert_eq!(status, 404);

    let bot = Rest {
        app: &app,
        key: app.key(pb::Role::Bot, None).await,
    };
    let (status, body) = bot.call(M::GET, "/v1/queues", None).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
}

pub async fn the_openapi_document_describes_every_route(backend: Backend) {
    let app = spawn_app(backend).await;
    // No key needed.
    let response = reqwest::get(format!("http://{}/v1/openapi.json", app.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    let operations: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    let pool = prost_reflect::DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let unary = pool
        .services()
        .filter(|s| s.package_name() == "ticketd.v1")
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .filter(|m| !m.is_client_streaming() && !m.is_server_streaming())
        .count();
    assert_eq!(unary, 82, "the public services' unary RPCs");
    assert_eq!(
        operations,
        unary + 1,
        "one operation per unary RPC, and GetTicket's second binding"
    );
    let create = &paths["/v1/tickets"]["post"];
    assert_eq!(create["operationId"], "TicketService_CreateTicket");
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ticketd.v1.CreateTicketRequest"
    );
    let update = &paths["/v1/tickets/{ticket_id}"]["patch"];
    let query: Vec<&str> = update["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(query, vec!["updateMask", "etag"]);
    // Every reference resolves.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let text = document.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "{name} is referred to but not defined"
        );
    }
}
