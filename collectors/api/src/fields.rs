//! The option names a configuration struct declares, read from its serde
//! `Deserialize`.
//!
//! A struct that derives `Deserialize` asks its deserializer for a struct
//! and hands it the names of its fields (with their `rename` and `alias`
//! applied, without `skip`ped fields): every key it accepts. [`of`] plays
//! that deserializer, writes the names down and stops there, so the list
//! is the derive's own and cannot drift from the struct. The agent uses it
//! to tell a collector's options from its named instances
//! ([`crate::Collector::options`]).
//!
//! ```
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Options {
//!     url: String,
//!     #[serde(rename = "labels", alias = "tags")]
//!     label_map: std::collections::BTreeMap<String, String>,
//!     #[serde(skip)]
//!     _cache: Vec<u8>,
//! }
//!
//! assert_eq!(carat_collector::fields::of::<Options>(), Ok(&["url", "labels", "tags"][..]));
//! assert!(carat_collector::fields::of::<Vec<String>>().is_err());
//! ```

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Why [`of`] could not tell a type's fields: its `Deserialize` does not ask
/// for a struct (a map, a list, a hand-written implementation, or a struct
/// with a `#[serde(flatten)]` field, which serde reads as a map).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotAStruct(String);

impl fmt::Display for NotAStruct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for NotAStruct {}

impl de::Error for NotAStruct {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NotAStruct(msg.to_string())
    }
}

/// The keys `T` accepts: the field names (and aliases) its derived
/// `Deserialize` declares. An error when `T` does not deserialize as a
/// struct with named fields.
pub fn of<'de, T: Deserialize<'de>>() -> Result<&'static [&'static str], NotAStruct> {
    let mut fields = None;
    // The recorder fails every call, so the result is always an error; the
    // fields were written down on the way if `T` asked for a struct.
    let _ = T::deserialize(Recorder {
        fields: &mut fields,
    });
    fields.ok_or_else(|| {
        NotAStruct(format!(
            "{} does not deserialize as a struct with named fields",
            std::any::type_name::<T>()
        ))
    })
}

/// A deserializer that writes down the fields a struct asks for, and
/// refuses everything.
struct Recorder<'a> {
    fields: &'a mut Option<&'static [&'static str]>,
}

impl<'de> Deserializer<'de> for Recorder<'_> {
    type Error = NotAStruct;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotAStruct> {
        Err(NotAStruct("not a struct".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, NotAStruct> {
        *self.fields = Some(fields);
        Err(NotAStruct("fields recorded".into()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        a: u8,
    }

    /// `try_from` and `transparent` read through to the struct behind.
    #[derive(serde::Deserialize)]
    #[serde(try_from = "Inner")]
    #[allow(dead_code)]
    struct Checked(u8);

    impl TryFrom<Inner> for Checked {
        type Error = String;
        fn try_from(i: Inner) -> Result<Self, String> {
            Ok(Checked(i.a))
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(transparent)]
    #[allow(dead_code)]
    struct Wrapper(Inner);

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Flat {
        b: u8,
        #[serde(flatten)]
        inner: Inner,
    }

    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Empty {}

    #[test]
    fn reads_through_conversions() {
        assert_eq!(of::<Checked>(), Ok(&["a"][..]));
        assert_eq!(of::<Wrapper>(), Ok(&["a"][..]));
        assert_eq!(of::<Empty>(), Ok(&[][..]));
    }

    #[test]
    fn what_is_not_a_struct_is_an_error() {
        let e = of::<Flat>().unwrap_err();
        assert!(e.to_string().contains("Flat"), "{e}");
        assert!(of::<std::collections::HashMap<String, u8>>().is_err());
        assert!(of::<u8>().is_err());
    }
}
