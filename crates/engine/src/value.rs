//! The [`Value`] type stored by every primitive.
//!
//! Values serialize to MessagePack with their natural types (nil, bool, int, float, str, bin, array, map),
//! so the bytes are compact and language-neutral. JSON has no byte strings: [`Value::to_json`] renders
//! bytes as `{"$bytes": "<base64>"}` and [`Value::from_json`] reads that form back.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dynamically typed value: null, bool, int, float, string, bytes, array or object.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// The absence of a value.
    #[default]
    Null,
    /// true or false.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An ordered list.
    Array(Vec<Value>),
    /// A map with string keys, kept sorted so that equal objects encode to equal bytes.
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// Builds an object from `(key, value)` pairs.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The name of this value's type, as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer inside, if this is an int.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Looks up a field of an object.
    pub fn get(&self, field: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.get(field),
            _ => None,
        }
    }

    /// The part of this document at a JSON Pointer (RFC 6901) path (`""` is the whole document), or
    /// `None` when nothing is there.
    pub fn pointer(&self, path: &str) -> crate::Result<Option<&Value>> {
        crate::jsonpath::get(self, path)
    }

    /// Converts to `serde_json::Value`; bytes become `{"$bytes": base64}`, and non-finite floats become null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::String(s) => J::String(s.clone()),
            Value::Bytes(b) => {
                let mut m = serde_json::Map::new();
                m.insert(
                    "$bytes".into(),
                    J::String(base64::engine::general_purpose::STANDARD.encode(b)),
                );
                J::Object(m)
            }
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            Value::Object(o) => {
                J::Object(o.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// Converts from `serde_json::Value`; `{"$bytes": base64}` becomes bytes. Integers that do not fit in
    /// an i64 become floats.
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::String(s.clone()),
            J::Array(a) => Value::Array(a.iter().map(Value::from_json).collect()),
            J::Object(o) => {
                if o.len() == 1 {
                    if let Some(J::String(b64)) = o.get("$bytes") {
                        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
                            return Value::Bytes(bytes);
                        }
                    }
                }
                Value::Object(
                    o.iter()
                        .map(|(k, v)| (k.clone(), Value::from_json(v)))
                        .collect(),
                )
            }
        }
    }

    /// Encodes to MessagePack: the storage and wire form.
    pub fn to_msgpack(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("encoding a Value to msgpack cannot fail")
    }

    /// Decodes from MessagePack.
    pub fn from_msgpack(bytes: &[u8]) -> Result<Value, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl From<serde_json::Value> for Value {
    fn from(j: serde_json::Value) -> Self {
        Value::from_json(&j)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i as i64)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(b)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::String(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::Array(a) => a.serialize(s),
            Value::Object(o) => o.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Strata value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} does not fit in a signed 64-bit int")))
    }
    fn visit_f32<E>(self, v: f32) -> Result<Value, E> {
        Ok(Value::Float(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_roundtrip_keeps_every_type() {
        let v = Value::object([
            ("n", Value::Null),
            ("b", Value::Bool(true)),
            ("i", Value::Int(-7)),
            ("f", Value::Float(1.5)),
            ("s", Value::from("hé")),
            ("bytes", Value::Bytes(vec![0, 255, 3])),
            ("a", Value::Array(vec![Value::Int(1), Value::from("x")])),
        ]);
        let back = Value::from_msgpack(&v.to_msgpack()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn json_roundtrip_renders_bytes_as_base64() {
        let v = Value::Array(vec![
            Value::Bytes(b"hi".to_vec()),
            Value::Int(3),
            Value::Float(0.25),
        ]);
        let j = v.to_json();
        assert_eq!(j.to_string(), r#"[{"$bytes":"aGk="},3,0.25]"#);
        assert_eq!(Value::from_json(&j), v);
    }
}
