//! The subscription tree: topic filters indexed level by level, so matching a
//! topic visits only the branches that can match (cost grows with topic depth,
//! not with the number of subscriptions).
//!
//! A node holds the plain subscriptions of its filter (one entry per client)
//! and its shared-subscription groups (`$share/<group>/<filter>`), each group a
//! member list with a cursor the router's strategy uses to pick one member.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// Members of one share group on one filter.
#[derive(Debug)]
pub struct SharedGroup<V> {
    pub group: Arc<str>,
    pub filter: Arc<str>,
    pub members: Vec<(Arc<str>, V)>,
    /// Round-robin / sticky position; atomic so matching can advance it under a read lock.
    pub cursor: AtomicUsize,
}

#[derive(Debug)]
struct Node<V> {
    children: Map<Box<str>, Node<V>>,
    subs: Map<Arc<str>, V>,
    shared: Vec<SharedGroup<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: Map::default(),
            subs: Map::default(),
            shared: Vec::new(),
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subs.is_empty() && self.shared.is_empty()
    }
}

/// One match found while routing a topic.
pub enum Match<'a, V> {
    /// A plain subscription of `client`.
    Normal(&'a Arc<str>, &'a V),
    /// A share group: the router picks one member.
    Shared(&'a SharedGroup<V>),
}

/// Subscription tree. Values `V` carry the subscription options.
#[derive(Debug)]
pub struct SubTree<V> {
    root: Node<V>,
    count: usize,
}

impl<V> Default for SubTree<V> {
    fn default() -> Self {
        SubTree {
            root: Node::default(),
            count: 0,
        }
    }
}

impl<V> SubTree<V> {
    /// Number of subscriptions (plain plus shared memberships).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn node_mut(&mut self, filter: &str) -> &mut Node<V> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        node
    }

    /// Add or replace `client`'s subscription to `filter`; returns the old value.
    pub fn insert(&mut self, filter: &str, client: Arc<str>, value: V) -> Option<V> {
        let old = self.node_mut(filter).subs.insert(client, value);
        if old.is_none() {
            self.count += 1;
        }
        old
    }

    /// Add or replace `client` in share group `group` on `filter`; returns the old value.
    pub fn insert_shared(&mut self, group: &str, filter: &str, client: Arc<str>, value: V) -> Option<V> {
        let node = self.node_mut(filter);
        let idx = match node.shared.iter().position(|g| &*g.group == group) {
            Some(i) => i,
            None => {
                node.shared.push(SharedGroup {
                    group: group.into(),
                    filter: filter.into(),
                    members: Vec::new(),
                    cursor: AtomicUsize::new(0),
                });
                node.shared.len() - 1
            }
        };
        let g = &mut node.shared[idx];
        if let Some(m) = g.members.iter_mut().find(|(c, _)| *c == client) {
            return Some(std::mem::replace(&mut m.1, value));
        }
        g.members.push((client, value));
        self.count += 1;
        None
    }

    /// Remove `client`'s subscription (`group` for shared ones); prunes empty branches.
    pub fn remove(&mut self, group: Option<&str>, filter: &str, client: &str) -> Option<V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = Self::remove_at(&mut self.root, &levels, group, client);
        if removed.is_some() {
            self.count -= 1;
        }
        removed
    }

    fn remove_at(node: &mut Node<V>, levels: &[&str], group: Option<&str>, client: &str) -> Option<V> {
        match levels.split_first() {
            None => match group {
                None => node.subs.remove(client),
                Some(group) => {
                    let gi = node.shared.iter().position(|g| &*g.group == group)?;
                    let g = &mut node.shared[gi];
                    let mi = g.members.iter().position(|(c, _)| &**c == client)?;
                    let (_, v) = g.members.remove(mi);
                    if g.members.is_empty() {
                        node.shared.remove(gi);
                    }
                    Some(v)
                }
            },
            Some((first, rest)) => {
                let child = node.children.get_mut(*first)?;
                let removed = Self::remove_at(child, rest, group, client);
                if child.is_empty() {
                    node.children.remove(*first);
                }
                removed
            }
        }
    }

    /// Call `f` for every subscription matching `topic` (a valid topic name).
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(Match<'a, V>)) {
        let levels: smallvec_levels::Levels = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        Self::walk(&self.root, &levels, dollar, &mut f);
    }

    fn emit<'a>(node: &'a Node<V>, f: &mut impl FnMut(Match<'a, V>)) {
        for (c, v) in &node.subs {
            f(Match::Normal(c, v));
        }
        for g in &node.shared {
            f(Match::Shared(g));
        }
    }

    fn walk<'a>(node: &'a Node<V>, levels: &[&str], first_is_dollar: bool, f: &mut impl FnMut(Match<'a, V>)) {
        if !first_is_dollar {
            if let Some(hash) = node.children.get("#") {
                Self::emit(hash, f);
            }
        }
        match levels.split_first() {
            None => Self::emit(node, f),
            Some((level, rest)) => {
                if !first_is_dollar {
                    if let Some(plus) = node.children.get("+") {
                        Self::walk(plus, rest, false, f);
                    }
                }
                if *level != "+" && *level != "#" {
                    if let Some(child) = node.children.get(*level) {
                        Self::walk(child, rest, false, f);
                    }
                }
            }
        }
    }
}

/// A small inline vector of topic levels, so matching does not allocate for common depths.
mod smallvec_levels {
    pub struct Levels<'a> {
        inline: [&'a str; 16],
        len: usize,
        spill: Vec<&'a str>,
    }

    impl<'a> FromIterator<&'a str> for Levels<'a> {
        fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
            let mut l = Levels {
                inline: [""; 16],
                len: 0,
                spill: Vec::new(),
            };
            for s in iter {
                if l.len < 16 && l.spill.is_empty() {
                    l.inline[l.len] = s;
                    l.len += 1;
                } else {
                    if l.spill.is_empty() {
                        l.spill.extend_from_slice(&l.inline[..l.len]);
                    }
                    l.spill.push(s);
                }
            }
            l
        }
    }

    impl<'a> std::ops::Deref for Levels<'a> {
        type Target = [&'a str];
        fn deref(&self) -> &[&'a str] {
            if self.spill.is_empty() {
                &self.inline[..self.len]
            } else {
                &self.spill
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::topic::matches;

    fn matched(t: &SubTree<u8>, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        t.for_each_match(topic, |m| match m {
            Match::Normal(c, _) => out.push(c.to_string()),
            Match::Shared(g) => out.push(format!("{}:{}", g.group, g.members.len())),
        });
        out.sort();
        out
    }

    #[test]
    fn tree_agrees_with_matches() {
        let filters = [
            "#", "+", "a", "a/b", "a/+", "a/#", "+/b", "+/+", "a/b/c", "$SYS/#", "$SYS/+", "/+", "+/#", "a/+/c",
        ];
        let topics = ["a", "a/b", "a/b/c", "b", "/a", "$SYS/x", "$SYS", "a/", "a/x/c", "//"];
        let mut t = SubTree::default();
        for f in filters {
            t.insert(f, Arc::from(f), 0u8);
        }
        for topic in topics {
            let mut want: Vec<String> = filters
                .iter()
                .filter(|f| matches(f, topic))
                .map(|f| f.to_string())
                .collect();
            want.sort();
            assert_eq!(matched(&t, topic), want, "topic {topic}");
        }
    }

    #[test]
    fn remove_prunes_and_shared() {
        let mut t = SubTree::default();
        t.insert("a/b", Arc::from("c1"), 1u8);
        t.insert_shared("g", "a/+", Arc::from("c2"), 1u8);
        t.insert_shared("g", "a/+", Arc::from("c3"), 1u8);
        assert_eq!(t.len(), 3);
        assert_eq!(matched(&t, "a/b"), vec!["c1", "g:2"]);
        assert!(t.remove(Some("g"), "a/+", "c2").is_some());
        assert_eq!(matched(&t, "a/b"), vec!["c1", "g:1"]);
        assert!(t.remove(None, "a/b", "c1").is_some());
        assert!(t.remove(Some("g"), "a/+", "c3").is_some());
        assert!(t.is_empty());
        assert!(t.root.is_empty());
    }
}
