//! The raw layer tree: YAML read by serde-saphyr into plain values that remember
//! where they were written.
//!
//! Every [`Node`] carries the [`Loc`] (file, line, column) of the layer that set it,
//! so that merge results, typed-model errors and `strata explain` can all point at
//! the exact source line. The tree is deliberately untyped: typing happens once,
//! after merging, in [`crate::model`].

use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Spanned, Tagged};

/// A position in a layer file: 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    /// Path of the file relative to the project root, e.g. `environments/prod.yaml`.
    pub file: Arc<str>,
    pub line: u32,
    /// 1-based; 0 when only the line is known (a line of a template that produced a
    /// value: which column of it is not).
    pub col: u32,
}

impl Loc {
    pub fn new(file: Arc<str>, line: u32, col: u32) -> Self {
        Loc { file, line, col }
    }

    /// The location of a whole file, for errors that have no better place.
    pub fn file(file: Arc<str>) -> Self {
        Loc {
            file,
            line: 1,
            col: 1,
        }
    }
}

/// As `file:line:col` (`file:line` when the column is not known).
impl serde::Serialize for Loc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if self.col > 0 {
            write!(f, ":{}", self.col)?;
        }
        Ok(())
    }
}

/// One value of a layer, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    /// Where the value starts.
    pub loc: Loc,
    /// Where the key that holds it starts (equal to `loc` for list items and roots).
    pub key_loc: Loc,
}

/// The entries of a mapping, in the order written (the hasher does not change it).
pub type Map = IndexMap<String, Node>;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Shared: a copy of a tree shares the mappings neither side changed, and a change
    /// copies only the mappings on its path (`Arc::make_mut`). Every target's merged tree
    /// starts as a copy of the base and cloud layers merged once, so each holds only what
    /// its own layers changed.
    Map(Arc<Map>),
    /// `!ref PATH`: the value at PATH, resolved by [`crate::model::refs`].
    Ref(String),
    /// `!sub "text ${PATH} text"`: a string with references in it.
    Sub(String),
}

/// The YAML tags strata gives a meaning to.
pub const REF_TAG: &str = "!ref";
pub const SUB_TAG: &str = "!sub";

impl Value {
    /// The YAML word for the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Ref(_) => "a !ref reference",
            Value::Sub(_) => "a !sub string",
        }
    }
}

impl Node {
    pub fn map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m.as_ref()),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.map().and_then(|m| m.get(key))
    }

    /// Follows a dotted path (`bucket.lifecycle.glacierAfterDays`); list items are
    /// addressed by their index (`app.args.0`).
    pub fn lookup<'a, I: IntoIterator<Item = &'a str>>(&self, path: I) -> Option<&Node> {
        let mut node = self;
        for segment in path {
            node = match &node.value {
                Value::Map(m) => m.get(segment)?,
                Value::Seq(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The plain JSON value, without locations; used to hand the tree to serde.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            // Unresolved (only a tree that has not been through `model::refs` has them).
            Value::Ref(path) => J::String(format!("!ref {path}")),
            Value::Sub(text) => J::String(format!("!sub {text}")),
        }
    }

    /// Replaces every location in the tree with one in `file`: the parser only knows
    /// lines and columns, the loader knows which file it read.
    fn with_file(value: RawNode, file: &Arc<str>, key_loc: Option<Loc>) -> Node {
        let loc = Loc::new(
            file.clone(),
            value.line.max(1) as u32,
            value.col.max(1) as u32,
        );
        let converted = match value.value {
            RawValue::Null => Value::Null,
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Int(i) => Value::Int(i),
            RawValue::Float(f) => Value::Float(f),
            RawValue::Str(s) => Value::Str(s),
            RawValue::Ref(s) => Value::Ref(s),
            RawValue::Sub(s) => Value::Sub(s),
            RawValue::Seq(items) => Value::Seq(
                items
                    .into_iter()
                    .map(|item| Node::with_file(item, file, None))
                    .collect(),
            ),
            RawValue::Map(entries) => Value::Map(Arc::new(
                entries
                    .into_iter()
                    .map(|(key, item)| {
                        let key_loc = Loc::new(file.clone(), key.1.max(1), key.2.max(1));
                        (key.0, Node::with_file(item, file, Some(key_loc)))
                    })
                    .collect(),
            )),
        };
        Node {
            value: converted,
            key_loc: key_loc.unwrap_or_else(|| loc.clone()),
            loc,
        }
    }

    /// Wraps parsed YAML (see [`parse_yaml`]) with the file it came from.
    pub(crate) fn from_raw(raw: RawNode, file: &Arc<str>) -> Node {
        Node::with_file(raw, file, None)
    }
}

/// What serde-saphyr gives us: a value and its line/column, without the file.
#[derive(Debug)]
pub(crate) struct RawNode {
    value: RawValue,
    line: u64,
    col: u64,
}

#[derive(Debug)]
enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Ref(String),
    Sub(String),
    Seq(Vec<RawNode>),
    /// Keys keep their own line and column.
    Map(Vec<((String, u32, u32), RawNode)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Tagged<RawValue>>::deserialize(deserializer)?;
        let Tagged(value, tag) = spanned.value;
        let value = match (tag.as_deref(), value) {
            // Core-schema tags (`!!str`, `!!int`, ...) are YAML's own; the parser has
            // applied them already.
            (None, value) => value,
            (Some(t), value) if t.starts_with("tag:yaml.org,2002:") => value,
            (Some(REF_TAG), RawValue::Str(path)) => RawValue::Ref(path.trim().to_owned()),
            (Some(SUB_TAG), RawValue::Str(text)) => RawValue::Sub(text),
            (Some(t @ (REF_TAG | SUB_TAG)), other) => {
                return Err(de::Error::custom(format!(
                    "`{t}` takes a plain string, found {}",
                    other.kind()
                )));
            }
            (Some(t), _) => {
                return Err(de::Error::custom(format!(
                    "unknown YAML tag `{t}`; strata knows `!ref PATH` and `!sub \"...${{PATH}}...\"`"
                )));
            }
        };
        Ok(RawNode {
            line: spanned.referenced.line(),
            col: spanned.referenced.column(),
            value,
        })
    }
}

impl RawValue {
    fn kind(&self) -> &'static str {
        match self {
            RawValue::Null => "null",
            RawValue::Bool(_) => "a boolean",
            RawValue::Int(_) | RawValue::Float(_) => "a number",
            RawValue::Str(_) | RawValue::Ref(_) | RawValue::Sub(_) => "a string",
            RawValue::Seq(_) => "a list",
            RawValue::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom(format!("the integer {v} is too large")))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom(format!("the integer {v} is too large")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom(format!("the integer {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<RawNode>()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<RawNode>()?;
            let (line, col) = (key.referenced.line() as u32, key.referenced.column() as u32);
            entries.push(((key.value, line, col), value));
        }
        Ok(RawValue::Map(entries))
    }
}

/// A serde error from typing a tree: serde's own message (`invalid type: string
/// "maybe", expected a boolean`), which `model::typed` places at the key's line.
#[derive(Debug)]
pub struct TypeError(String);

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TypeError {}

impl de::Error for TypeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TypeError(msg.to_string())
    }
}

/// Typing reads the merged tree itself, with no intermediate copy: the tree is
/// visited as serde_json visits a JSON value (non-negative integers as `u64`, a
/// non-finite float as null), so the messages are the ones serde gives for JSON.
impl<'de> Deserializer<'de> for &'de Node {
    type Error = TypeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypeError> {
        match &self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => match u64::try_from(*i) {
                Ok(u) => visitor.visit_u64(u),
                Err(_) => visitor.visit_i64(*i),
            },
            Value::Float(f) if f.is_finite() => visitor.visit_f64(*f),
            Value::Float(_) => visitor.visit_unit(),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Ref(_) | Value::Sub(_) => Err(de::Error::custom(REFS_NOT_HERE)),
            Value::Seq(items) => {
                let mut access = Items(items.iter());
                let value = visitor.visit_seq(&mut access)?;
                match access.0.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(
                        items.len(),
                        &"fewer elements in array",
                    )),
                }
            }
            Value::Map(entries) => {
                let mut access = Entries {
                    iter: entries.iter(),
                    value: None,
                };
                let value = visitor.visit_map(&mut access)?;
                match access.iter.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(
                        entries.len(),
                        &"fewer elements in map",
                    )),
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TypeError> {
        visitor.visit_newtype_struct(self)
    }

    /// Unit variants are written as strings (`provider: google`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TypeError> {
        use de::IntoDeserializer;
        match &self.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier
    }

    /// Skipped parts (free-form sections) may hold references: they are resolved later.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypeError> {
        visitor.visit_unit()
    }
}

/// What typing says of a reference in a strata-owned key.
pub const REFS_NOT_HERE: &str = "references (!ref, !sub) are resolved only in releases.<r>.values, workloads.<w>.env, workloads.<w>.statements and vars";

struct Items<'de>(std::slice::Iter<'de, Node>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = TypeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TypeError> {
        self.0.next().map(|item| seed.deserialize(item)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'de> {
    iter: indexmap::map::Iter<'de, String, Node>,
    value: Option<&'de Node>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = TypeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TypeError> {
        let Some((key, value)) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TypeError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a map value was asked for before its key"))?;
        seed.deserialize(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}
