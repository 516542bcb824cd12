//! The values a statement binds: one enum over every column type ticketd stores, so
//! one statement can carry values of several types to either backend.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{StoreError, StoreResult};

/// A value bound to one statement parameter; `None` binds SQL NULL.
#[derive(Debug, Clone)]
pub enum Value<'q> {
    Uuid(Option<Uuid>),
    Text(Option<Cow<'q, str>>),
    Int(Option<i64>),
    Int32(Option<i32>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Json(Box<RawValue>),
    Bytes(Option<Cow<'q, [u8]>>),
}

impl From<Uuid> for Value<'_> {
    fn from(v: Uuid) -> Self {
        Value::Uuid(Some(v))
    }
}
impl From<&Uuid> for Value<'_> {
    fn from(v: &Uuid) -> Self {
        Value::Uuid(Some(*v))
    }
}
impl From<&DateTime<Utc>> for Value<'_> {
    fn from(v: &DateTime<Utc>) -> Self {
        Value::Time(Some(*v))
    }
}
impl From<Option<Uuid>> for Value<'_> {
    fn from(v: Option<Uuid>) -> Self {
        Value::Uuid(v)
    }
}
impl<'q> From<&'q str> for Value<'q> {
    fn from(v: &'q str) -> Self {
        Value::Text(Some(Cow::Borrowed(v)))
    }
}
impl<'q> From<&'q String> for Value<'q> {
    fn from(v: &'q String) -> Self {
        Value::Text(Some(Cow::Borrowed(v.as_str())))
    }
}
impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Some(Cow::Owned(v)))
    }
}
impl<'q> From<Option<&'q str>> for Value<'q> {
    fn from(v: Option<&'q str>) -> Self {
        Value::Text(v.map(Cow::Borrowed))
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::Int32(Some(v))
    }
}
impl From<Option<i32>> for Value<'_> {
    fn from(v: Option<i32>) -> Self {
        Value::Int32(v)
    }
}
impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(Some(v))
    }
}
impl From<Option<bool>> for Value<'_> {
    fn from(v: Option<bool>) -> Self {
        Value::Bool(v)
    }
}
impl From<DateTime<Utc>> for Value<'_> {
    fn from(v: DateTime<Utc>) -> Self {
        Value::Time(Some(v))
    }
}
impl From<Option<DateTime<Utc>>> for Value<'_> {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Value::Time(v)
    }
}
impl<'q> From<&'q [u8]> for Value<'q> {
    fn from(v: &'q [u8]) -> Self {
        Value::Bytes(Some(Cow::Borrowed(v)))
    }
}
impl<'q> From<&'q Vec<u8>> for Value<'q> {
    fn from(v: &'q Vec<u8>) -> Self {
        Value::Bytes(Some(Cow::Borrowed(v.as_slice())))
    }
}

/// `value` as a JSON parameter.
pub fn json(value: &impl Serialize) -> StoreResult<Value<'static>> {
    serde_json::value::to_raw_value(value)
        .map(Value::Json)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode JSON: {e}")))
}
