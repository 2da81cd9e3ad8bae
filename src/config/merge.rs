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
//!    merged tree holds no null map entry (list items are taken verbatim, nulls included).
//! 5. **Provenance follows the value**: every node of the result keeps the location of
//!    the layer that wrote it; a mapping keeps the location of the first layer that
//!    opened it. Keys removed by a null are remembered with the null's location so an
//!    error about a missing key can say which layer removed it.
//!
//! Merging is associative, `merge(merge(a, b), c) == merge(a, merge(b, c))` for the
//! values, when the layers agree on the kind of each key and hold no nulls (a property
//! test pins it), which is what lets a reader reason about one layer at a time. A change
//! of kind or a null breaks it (`{x: {p: 1}}`, `{x: 5}`, `{x: {q: 2}}` give `{x: {q: 2}}`
//! folded left but keep `p` grouped right); layers are always folded first to last.

use std::sync::Arc;

use super::node::{Loc, Map, Node, Value};

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
            // A mapping shared with other trees is copied here (shallowly: its own
            // entries, whose mappings stay shared until a change reaches them).
            let below = Arc::make_mut(below);
            for (key, value) in above.iter() {
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

/// A copy of `node` with every null-valued map entry dropped (rule 4). A mapping with
/// no null below it is shared, not copied.
pub fn without_nulls(node: &Node) -> Node {
    match &node.value {
        Value::Map(entries) if has_null_entry(entries) => Node {
            value: Value::Map(Arc::new(
                entries
                    .iter()
                    .filter(|(_, v)| v.value != Value::Null)
                    .map(|(k, v)| (k.clone(), without_nulls(v)))
                    .collect(),
            )),
            loc: node.loc.clone(),
            key_loc: node.key_loc.clone(),
        },
        _ => node.clone(),
    }
}

/// Whether a mapping holds a null entry, itself or in a mapping below it (list items
/// do not count: they are taken verbatim).
fn has_null_entry(entries: &Map) -> bool {
    entries.values().any(|v| match &v.value {
        Value::Null => true,
        Value::Map(m) => has_null_entry(m),
        _ => false,
    })
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
    let mut partial = Partial::default();
    partial.fold(layers);
    partial.finish()
}

/// A merge stopped after some layers, so that layers many targets share (base and
/// cloud) are merged once and the result cloned for each target: the same left fold,
/// resumed.
#[derive(Clone, Debug, Default)]
pub struct Partial {
    tree: Option<Node>,
    removals: Vec<Removal>,
}

impl Partial {
    /// Merges further layers over what is there.
    pub fn fold<'a>(&mut self, layers: impl IntoIterator<Item = &'a Node>) {
        for layer in layers {
            match &mut self.tree {
                None => self.tree = Some(without_nulls(layer)),
                Some(base) => merge_into(base, layer, "", &mut self.removals),
            }
        }
    }

    /// The merged tree, and the removals that still hold.
    pub fn finish(mut self) -> (Option<Node>, Vec<Removal>) {
        // A key that a later layer set again is no longer removed.
        if let Some(tree) = &self.tree {
            self.removals
                .retain(|r| tree.lookup(r.path.split('.')).is_none());
        }
        (self.tree, self.removals)
    }
}

#[cfg(test)]
mod tests {
    //! One test per merge rule of the module doc, then the rules as properties.

    use std::sync::Arc;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::config::parse_layer;

    fn layer(file: &str, yaml: &str) -> Node {
        parse_layer(yaml.as_bytes(), file).expect("test layer parses")
    }

    /// Merges YAML layers named `l0.yaml`, `l1.yaml`, … in order.
    fn merged(layers: &[&str]) -> (Node, Vec<Removal>) {
        let nodes: Vec<Node> = layers
            .iter()
            .enumerate()
            .map(|(i, y)| layer(&format!("l{i}.yaml"), y))
            .collect();
        let (tree, removals) = merge_layers(&nodes);
        (tree.expect("at least one layer"), removals)
    }

    fn at<'a>(tree: &'a Node, path: &str) -> &'a Node {
        tree.lookup(path.split('.'))
            .unwrap_or_else(|| panic!("{path} is in the tree"))
    }

    /// `without_nulls` shares a mapping with no null below it (each target's tree is
    /// built from the shared layers this way: a copy would cost every target its own)
    /// and rebuilds only the mappings on the way to a null.
    #[test]
    fn without_nulls_shares_what_it_does_not_change() {
        let tree = layer(
            "l0.yaml",
            "clean: {a: 1, b: {c: 2}}\ndirty: {a: 1, gone: null}",
        );
        let out = without_nulls(&tree);
        let map = |n: &Node| match &n.value {
            Value::Map(m) => Arc::clone(m),
            other => panic!("a mapping, not {other:?}"),
        };
        assert!(
            !Arc::ptr_eq(&map(&tree), &map(&out)),
            "the root holds a null below it"
        );
        assert!(Arc::ptr_eq(
            &map(at(&tree, "clean")),
            &map(at(&out, "clean"))
        ));
        assert!(Arc::ptr_eq(
            &map(at(&tree, "clean.b")),
            &map(at(&out, "clean.b"))
        ));
        assert!(!Arc::ptr_eq(
            &map(at(&tree, "dirty")),
            &map(at(&out, "dirty"))
        ));
        assert!(out.lookup("dirty.gone".split('.')).is_none());
        assert_eq!(at(&out, "dirty.a").value, at(&tree, "dirty.a").value);
    }

    #[test]
    fn maps_merge_deeply() {
        let (tree, _) = merged(&["a: {b: {c: 1, d: 2}, e: 3}", "a: {b: {d: 20, f: 30}}"]);
        assert_eq!(
            tree.to_json(),
            json!({"a": {"b": {"c": 1, "d": 20, "f": 30}, "e": 3}})
        );
    }

    #[test]
    fn lists_replace_whole() {
        let (tree, _) = merged(&["xs: [1, 2, 3]\nys: [{a: 1}]", "xs: [9]\nys: [{b: 2}]"]);
        assert_eq!(tree.to_json(), json!({"xs": [9], "ys": [{"b": 2}]}));
    }

    #[test]
    fn scalars_replace() {
        let (tree, _) = merged(&["a: 1\nb: first\nc: true", "a: 2\nb: second\nc: false"]);
        assert_eq!(tree.to_json(), json!({"a": 2, "b": "second", "c": false}));
    }

    #[test]
    fn a_change_of_kind_replaces() {
        let (tree, _) = merged(&[
            "a: {x: 1}\nb: plain\nc: [1]",
            "a: now-a-string\nb: {y: 2}\nc: {z: 3}",
        ]);
        assert_eq!(
            tree.to_json(),
            json!({"a": "now-a-string", "b": {"y": 2}, "c": {"z": 3}})
        );
    }

    #[test]
    fn explicit_null_removes_the_key_and_records_where() {
        let (tree, removals) = merged(&["a: {b: 1, c: {d: 2}}\nkeep: 1", "a:\n  c: null\n"]);
        assert_eq!(tree.to_json(), json!({"a": {"b": 1}, "keep": 1}));
        assert_eq!(
            removals,
            vec![Removal {
                path: "a.c".into(),
                loc: Loc::new(Arc::from("l1.yaml"), 2, 6)
            }]
        );
    }

    #[test]
    fn a_key_set_again_after_its_removal_is_not_a_removal() {
        let (tree, removals) = merged(&["a: 1", "a: null", "a: 3"]);
        assert_eq!(tree.to_json(), json!({"a": 3}));
        assert!(removals.is_empty(), "{removals:?}");
    }

    #[test]
    fn a_list_is_taken_verbatim_nulls_included() {
        let (tree, _) = merged(&["a: 1", "xs: [{k: null}, null]"]);
        assert_eq!(tree.to_json(), json!({"a": 1, "xs": [{"k": null}, null]}));
    }

    #[test]
    fn nulls_inside_a_new_map_are_dropped() {
        let (tree, removals) = merged(&["a: 1", "b: {c: null, d: {e: null, f: 1}}"]);
        assert_eq!(tree.to_json(), json!({"a": 1, "b": {"d": {"f": 1}}}));
        assert!(removals.is_empty());
        // The first layer is no exception.
        let (tree, _) = merged(&["a: null\nb: {c: null}"]);
        assert_eq!(tree.to_json(), json!({"b": {}}));
    }

    #[test]
    fn a_merged_node_keeps_the_location_of_the_layer_that_set_it() {
        let (tree, _) = merged(&["a:\n  b: 1\n  c: 2\n", "x: 0\na:\n  c: 3\n"]);
        // b comes from l0 line 2, c from l1 line 3.
        assert_eq!(at(&tree, "a.b").loc, Loc::new(Arc::from("l0.yaml"), 2, 6));
        assert_eq!(at(&tree, "a.c").loc, Loc::new(Arc::from("l1.yaml"), 3, 6));
        assert_eq!(
            at(&tree, "a.c").key_loc,
            Loc::new(Arc::from("l1.yaml"), 3, 3)
        );
        // The mapping itself keeps the layer that opened it.
        assert_eq!(&*at(&tree, "a").loc.file, "l0.yaml");
        assert_eq!(&*at(&tree, "x").loc.file, "l1.yaml");
    }

    #[test]
    fn a_replaced_list_keeps_the_location_of_the_new_list() {
        let (tree, _) = merged(&["xs: [1, 2]", "\nxs: [3]"]);
        assert_eq!(at(&tree, "xs").loc, Loc::new(Arc::from("l1.yaml"), 2, 5));
        assert_eq!(at(&tree, "xs.0").loc, Loc::new(Arc::from("l1.yaml"), 2, 6));
    }

    // ---- properties ----

    fn loc(layer: u32) -> Loc {
        Loc::new(Arc::from(format!("p{layer}.yaml")), 1, 1)
    }

    fn node(value: Value, layer: u32) -> Node {
        Node {
            value,
            loc: loc(layer),
            key_loc: loc(layer),
        }
    }

    /// Trees whose keys fix the kind of their value (`m*` maps, `l*` lists, `s*`
    /// scalars), so layers never change a key's kind. Over such trees, without nulls,
    /// merging is associative; a change of kind is not (see
    /// `a_change_of_kind_breaks_associativity`).
    fn shaped_tree(layer: u32) -> impl Strategy<Value = Node> {
        let list = prop::collection::vec(scalar(), 0..3)
            .prop_map(move |items| Value::Seq(items.into_iter().map(|v| node(v, layer)).collect()));
        let leaf_entries = prop::collection::vec(
            prop_oneof![
                (0..3u8, scalar()).prop_map(|(k, v)| (format!("s{k}"), v)),
                (0..2u8, list).prop_map(|(k, v)| (format!("l{k}"), v)),
            ],
            0..4,
        );
        let leaf = leaf_entries.prop_map(move |entries| to_map(entries, layer));
        leaf.prop_recursive(3, 32, 4, move |inner| {
            (
                prop::collection::vec((0..3u8, inner), 0..3),
                prop::collection::vec((0..3u8, any::<i64>()), 0..3),
            )
                .prop_map(move |(maps, scalars)| {
                    let mut entries: Vec<(String, Value)> = maps
                        .into_iter()
                        .map(|(k, n)| (format!("m{k}"), n.value))
                        .collect();
                    entries.extend(
                        scalars
                            .into_iter()
                            .map(|(k, i)| (format!("s{k}"), Value::Int(i))),
                    );
                    to_map(entries, layer)
                })
        })
    }

    fn scalar() -> BoxedStrategy<Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            "[a-z]{0,4}".prop_map(Value::Str),
        ]
        .boxed()
    }

    fn to_map(entries: Vec<(String, Value)>, layer: u32) -> Node {
        let map: Map = entries
            .into_iter()
            .map(|(k, v)| (k, node(v, layer)))
            .collect();
        node(Value::Map(Arc::new(map)), layer)
    }

    /// Any tree, nulls and kind changes included.
    fn any_tree() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            "[a-z]{0,3}".prop_map(Value::Str),
        ]
        .prop_map(|v| node(v, 0));
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|items| node(Value::Seq(items), 0)),
                prop::collection::vec(("[a-c]", inner), 0..4).prop_map(|entries| node(
                    Value::Map(Arc::new(entries.into_iter().collect())),
                    0
                )),
            ]
        })
        .prop_map(|n| match n.value {
            Value::Map(_) => n,
            other => node(
                Value::Map(Arc::new(
                    [("k".to_owned(), node(other, 0))].into_iter().collect(),
                )),
                0,
            ),
        })
    }

    fn merge2(a: &Node, b: &Node) -> Node {
        merge_layers([a, b]).0.expect("two layers")
    }

    fn has_null(n: &Node) -> bool {
        match &n.value {
            Value::Null => true,
            Value::Map(m) => m.values().any(has_null),
            Value::Seq(items) => items.iter().any(has_null),
            _ => false,
        }
    }

    /// A null map entry outside lists (list items are taken verbatim, see
    /// `a_list_is_taken_verbatim_nulls_included`).
    fn map_has_null(n: &Node) -> bool {
        match &n.value {
            Value::Map(m) => m
                .values()
                .any(|v| v.value == Value::Null || map_has_null(v)),
            _ => false,
        }
    }

    #[test]
    fn a_change_of_kind_breaks_associativity() {
        // Why the property below keeps kinds fixed: {x: map} ← {x: 5} ← {x: map}.
        let a = layer("a.yaml", "x: {p: 1}");
        let b = layer("b.yaml", "x: 5");
        let c = layer("c.yaml", "x: {q: 2}");
        assert_eq!(
            merge2(&merge2(&a, &b), &c).to_json(),
            json!({"x": {"q": 2}})
        );
        assert_eq!(
            merge2(&a, &merge2(&b, &c)).to_json(),
            json!({"x": {"p": 1, "q": 2}})
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn merging_is_associative(a in shaped_tree(0), b in shaped_tree(1), c in shaped_tree(2)) {
            let left = merge2(&merge2(&a, &b), &c);
            let right = merge2(&a, &merge2(&b, &c));
            prop_assert_eq!(left.to_json(), right.to_json());
            // Folding all three at once is the same thing.
            prop_assert_eq!(merge_layers([&a, &b, &c]).0.unwrap().to_json(), left.to_json());
        }

        #[test]
        fn a_merged_tree_never_holds_a_null_map_entry(a in any_tree(), b in any_tree()) {
            let tree = merge2(&a, &b);
            prop_assert!(!map_has_null(&tree), "{:?}", tree.to_json());
        }

        #[test]
        fn null_removes_any_present_key(a in shaped_tree(0), pick in any::<prop::sample::Index>()) {
            let keys: Vec<&String> = a.map().unwrap().keys().collect();
            prop_assume!(!keys.is_empty());
            let key = keys[pick.index(keys.len())].clone();
            let over = to_map(vec![(key.clone(), Value::Null)], 1);
            let (tree, removals) = merge_layers([&a, &over]);
            let tree = tree.unwrap();
            prop_assert!(tree.get(&key).is_none());
            prop_assert_eq!(removals, vec![Removal { path: key.clone(), loc: loc(1) }]);
            // Everything else is untouched.
            let mut expected = a.to_json();
            expected.as_object_mut().unwrap().remove(&key);
            prop_assert_eq!(tree.to_json(), expected);
        }

        #[test]
        fn a_list_replaces_whatever_was_there(a in any_tree(), items in prop::collection::vec(any::<i64>(), 0..4)) {
            let list = Value::Seq(items.iter().map(|i| node(Value::Int(*i), 1)).collect());
            let over = to_map(vec![("k".to_owned(), list)], 1);
            let tree = merge2(&a, &over);
            prop_assert_eq!(tree.get("k").unwrap().to_json(), json!(items));
            prop_assert!(!has_null(tree.get("k").unwrap()));
        }

        #[test]
        fn the_loader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_layer(&bytes, "f.yaml");
        }

        #[test]
        fn the_loader_never_panics_on_text(text in "(?s)[ -~\\n\\t:{}\\[\\]&*!|>'\"#%@`-]{0,300}") {
            let _ = parse_layer(text.as_bytes(), "f.yaml");
        }

        #[test]
        fn the_loader_never_panics_on_yaml_like_lines(
            lines in prop::collection::vec(("[ ]{0,6}", "[a-z&*!]{0,5}", prop_oneof![Just(": "), Just(":"), Just("- "), Just("")], "[a-z0-9 &*{}\\[\\],~'\"]{0,8}"), 0..20)
        ) {
            let text: String = lines.into_iter().map(|(i, k, s, v)| format!("{i}{k}{s}{v}\n")).collect();
            let _ = parse_layer(text.as_bytes(), "f.yaml");
        }
    }
}
