//! Tolerant deserialization: every field accepts null, absence, or a value of an
//! unexpected type. A value of the wrong type is not an error; it is handed back so the
//! caller can keep it next to the unknown fields instead of losing it.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// One field as found on the wire.
#[derive(Debug)]
pub(crate) enum Slot<T> {
    Null,
    Typed(T),
    Other(Value),
}

/// A type that a [`Slot`] can hold. Each hook returns `None` (or `Err(value)`) when the
/// JSON value does not fit, and the value is then kept as [`Slot::Other`].
pub(crate) trait Target: Sized {
    fn from_str(_s: &str) -> Option<Self> {
        None
    }
    fn from_bool(_b: bool) -> Option<Self> {
        None
    }
    fn from_i64(_n: i64) -> Option<Self> {
        None
    }
    fn from_u64(_n: u64) -> Option<Self> {
        None
    }
    fn from_f64(_n: f64) -> Option<Self> {
        None
    }
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Result<Self, Value>, A::Error> {
        Map::<String, Value>::deserialize(MapAccessDeserializer::new(map))
            .map(|m| Err(Value::Object(m)))
    }
    fn from_seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<Result<Self, Value>, A::Error> {
        Vec::<Value>::deserialize(SeqAccessDeserializer::new(seq)).map(|v| Err(Value::Array(v)))
    }
}

impl Target for String {
    fn from_str(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
    // Identifiers such as IMO and MMSI numbers are sometimes sent as JSON numbers.
    fn from_i64(n: i64) -> Option<Self> {
        Some(n.to_string())
    }
    fn from_u64(n: u64) -> Option<Self> {
        Some(n.to_string())
    }
}

impl Target for bool {
    fn from_bool(b: bool) -> Option<Self> {
        Some(b)
    }
}

impl Target for f64 {
    fn from_str(s: &str) -> Option<Self> {
        s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
    }
    fn from_i64(n: i64) -> Option<Self> {
        Some(n as f64)
    }
    fn from_u64(n: u64) -> Option<Self> {
        Some(n as f64)
    }
    fn from_f64(n: f64) -> Option<Self> {
        Some(n)
    }
}

fn fit<T>(typed: Option<T>, other: impl FnOnce() -> Value) -> Slot<T> {
    match typed {
        Some(t) => Slot::Typed(t),
        None => Slot::Other(other()),
    }
}

struct SlotVisitor<T>(PhantomData<T>);

impl<'de, T: Target> Visitor<'de> for SlotVisitor<T> {
    type Value = Slot<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Slot::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Slot::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(fit(T::from_bool(b), || Value::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(fit(T::from_i64(n), || Value::Number(n.into())))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(fit(T::from_u64(n), || Value::Number(n.into())))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(fit(T::from_f64(n), || {
            Number::from_f64(n).map_or(Value::Null, Value::Number)
        }))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(fit(T::from_str(s), || Value::String(s.to_owned())))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(match T::from_map(map)? {
            Ok(t) => Slot::Typed(t),
            Err(v) => Slot::Other(v),
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Ok(match T::from_seq(seq)? {
            Ok(t) => Slot::Typed(t),
            Err(v) => Slot::Other(v),
        })
    }
}

impl<'de, T: Target> Deserialize<'de> for Slot<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SlotVisitor(PhantomData))
    }
}

/// An object key, borrowed from the input when it has no escapes.
pub(crate) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
    pub(crate) fn into_string(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_owned(),
            Key::Owned(s) => s,
        }
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Key::Borrowed(s))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Key::Owned(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Key::Owned(s))
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

/// Reads the value of `key` as a `T`; null gives `None`, and a value of another type is
/// stored in `extra` under the same key.
pub(crate) fn take<'de, T: Target, A: MapAccess<'de>>(
    map: &mut A,
    key: Key<'de>,
    extra: &mut Map<String, Value>,
) -> Result<Option<T>, A::Error> {
    Ok(match map.next_value::<Slot<T>>()? {
        Slot::Typed(t) => Some(t),
        Slot::Null => None,
        Slot::Other(v) => {
            extra.insert(key.into_string(), v);
            None
        }
    })
}

/// Keeps a field the model does not know.
pub(crate) fn keep<'de, A: MapAccess<'de>>(
    map: &mut A,
    key: Key<'de>,
    extra: &mut Map<String, Value>,
) -> Result<(), A::Error> {
    let value = map.next_value::<Value>()?;
    extra.insert(key.into_string(), value);
    Ok(())
}

/// Declares a struct whose fields are all optional and whose unknown fields land in
/// `extra`, with a single-pass deserializer.
macro_rules! tolerant_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $key:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
        pub struct $name {
            $( $(#[$fmeta])* #[serde(skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>, )*
            /// Fields this model does not know, and known fields whose value had an
            /// unexpected type, exactly as received.
            #[serde(flatten)]
            pub extra: serde_json::Map<String, serde_json::Value>,
        }

        impl $crate::vizion::lenient::Target for $name {
            fn from_map<'de, A: serde::de::MapAccess<'de>>(
                mut map: A,
            ) -> Result<Result<Self, serde_json::Value>, A::Error> {
                let mut out = Self::default();
                while let Some(key) = map.next_key::<$crate::vizion::lenient::Key<'de>>()? {
                    match key.as_str() {
                        $( $key => out.$field = $crate::vizion::lenient::take(&mut map, key, &mut out.extra)?, )*
                        _ => $crate::vizion::lenient::keep(&mut map, key, &mut out.extra)?,
                    }
                }
                Ok(Ok(out))
            }
        }
    };
}

pub(crate) use tolerant_struct;
