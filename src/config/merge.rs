//! Layer merging, with Helm's rules.
//!
//! Layers are applied in order, later wins: `base` → `clouds/<cloud>` → `<env>` →
//! `<env>.<cloud>`. For each key of a later layer:
//!
//! 1. **Maps merge deeply**: a mapping over a mapping merges key by key, recursively.
//! 2. **Lists replace**: a list replaces whatever was there, whole; items are never
//!    appended or merged by index.
//! 3. **Scalars replace**, and so does any value whose kind differs from the one below
//!    (a mapping over a string replaces it, and the other way round).
//! 4. **An explicit `null` removes the key** from the result, together with everything
//!    below it. Nulls inside a mapping that did not exist below are dropped too, so a
//!    merged tree never holds a null.
//! 5. **Provenance follows the value**: every node of the result keeps the location of
//!    the layer that wrote it; a mapping keeps the location of the first layer that
//!    opened it. Keys removed by a null are remembered with the null's location so an
//!    error about a missing key can say which layer removed it.
//!
//! Merging is associative: `merge(merge(a, b), c) == merge(a, merge(b, c))` for the
//! values (a property test pins it), which is what lets a reader reason about one
//! layer at a time.

use super::node::{Loc, Node, Value};

/// A key removed by an explicit null, with the null's location.
#[derive(Clone, Debug, PartialEq)]
pub struct Removal {
    pub path: String,
    pub loc: Loc,
}

/// Merges `over` into `base` in place. `path` is the dotted path of `base`, used to
/// record removals.
pub fn merge_into(base: &mut Node, over: &Node, path: &str, removals: &mut Vec<Removal>) {
    match (&mut base.value, &over.value) {
        (Value::Map(below), Value::Map(above)) => {
            for (key, value) in above {
                let child_path = join_path(path, key);
                if value.value == Value::Null {
                    below.shift_remove(key);
                    removals.push(Removal {
                        path: child_path,
                        loc: value.loc.clone(),
                    });
                } else if let Some(existing) = below.get_mut(key) {
                    merge_into(existing, value, &child_path, removals);
                } else {
                    below.insert(key.clone(), without_nulls(value));
                }
            }
        }
        _ => *base = without_nulls(over),
    }
}

/// A copy of `node` with every null-valued map entry dropped (rule 4).
pub fn without_nulls(node: &Node) -> Node {
    match &node.value {
        Value::Map(entries) => Node {
            value: Value::Map(
                entries
                    .iter()
                    .filter(|(_, v)| v.value != Value::Null)
                    .map(|(k, v)| (k.clone(), without_nulls(v)))
                    .collect(),
            ),
            loc: node.loc.clone(),
            key_loc: node.key_loc.clone(),
        },
        _ => node.clone(),
    }
}

pub fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Merges whole layers, first to last.
pub fn merge_layers<'a>(
    layers: impl IntoIterator<Item = &'a Node>,
) -> (Option<Node>, Vec<Removal>) {
    let mut removals = Vec::new();
    let mut result: Option<Node> = None;
    for layer in layers {
        match &mut result {
            None => result = Some(without_nulls(layer)),
            Some(base) => merge_into(base, layer, "", &mut removals),
        }
    }
    // A key that a later layer set again is no longer removed.
    if let Some(tree) = &result {
        removals.retain(|r| tree.lookup(r.path.split('.')).is_none());
    }
    (result, removals)
}
