//! Deterministic AWS names and ownership tags of a stack.
//!
//! Every name is a pure function of the stack's identity (namespace, name,
//! environment) so that an operator killed between two AWS calls finds, on
//! restart, exactly the resources it already made. S3 bucket names are global
//! across all AWS accounts, so theirs also hash the account id.

use sha2::{Digest, Sha256};

/// Prefix of every generated name.
pub const NAME_PREFIX: &str = "imagestack";
/// Tag key naming the owning stack as `<namespace>/<name>`.
pub const OWNER_TAG: &str = "imagestack.dev/stack";
/// Tag key carrying the stack's environment.
pub const ENVIRONMENT_TAG: &str = "imagestack.dev/environment";
/// Tag key naming the installation (cluster id) that owns the resource: two
/// clusters sharing one AWS account never touch each other's stacks.
pub const CLUSTER_TAG: &str = "imagestack.dev/cluster";
/// Tag key marking the resource as managed by this operator.
pub const MANAGED_BY_TAG: &str = "imagestack.dev/managed-by";
/// Value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY: &str = "imagestack-operator";

/// Identity of a stack: everything names derive from (namespace, name,
/// environment), plus the installation that owns it (`cluster`), which is part
/// of ownership but not of names: names stay stable across operator upgrades.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StackId {
    pub namespace: String,
    pub name: String,
    pub environment: String,
    /// The installation's id (`--cluster-id`); empty in pure unit tests.
    pub cluster: String,
}

impl StackId {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        environment: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            environment: environment.into(),
            cluster: String::new(),
        }
    }

    /// The same identity, owned by installation `cluster`.
    pub fn in_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// Value of the ownership tag: `<namespace>/<name>`.
    pub fn owner_tag_value(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Short stable hash of the identity (and `salt`), hex, `len` (≤ 64)
    /// characters: the one hash every generated name uses.
    pub fn hash(&self, salt: &str, len: usize) -> String {
        let mut h = Sha256::new();
        // Separators that cannot occur in namespace, name or environment.
        for part in [
            self.namespace.as_str(),
            self.name.as_str(),
            self.environment.as_str(),
            salt,
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let digest = hex::encode(h.finalize());
        digest[..len.min(digest.len())].to_string()
    }

    /// Bucket name for `purpose` (`upload`, `webp`, `jpeg`, `png`):
    /// `imagestack-<env>-<purpose>-<hash12>`, at most 11+20+1+6+1+12 = 51
    /// characters, lowercase letters, digits and hyphens only, no dots.
    pub fn bucket_name(&self, purpose: &str, account_id: &str) -> String {
        format!(
            "{NAME_PREFIX}-{}-{purpose}-{}",
            self.environment,
            self.hash(account_id, 12)
        )
    }

    /// Metadata table name: `imagestack-<env>-metadata-<hash8>`.
    pub fn table_name(&self) -> String {
        format!(
            "{NAME_PREFIX}-{}-metadata-{}",
            self.environment,
            self.hash("", 8)
        )
    }

    /// Processor role name: `imagestack-<env>-processor-<hash8>` (≤ 64 characters).
    pub fn role_name(&self) -> String {
        format!(
            "{NAME_PREFIX}-{}-processor-{}",
            self.environment,
            self.hash("", 8)
        )
    }

    /// Name of the role's inline policy.
    pub fn role_policy_name(&self) -> String {
        "imagestack-processor".to_string()
    }

    /// Processor function name: `imagestack-<env>-processor-<hash8>`.
    pub fn function_name(&self) -> String {
        self.role_name()
    }

    /// Failed-event queue name: `imagestack-<env>-failed-events-<hash8>`.
    pub fn queue_name(&self) -> String {
        format!(
            "{NAME_PREFIX}-{}-failed-events-{}",
            self.environment,
            self.hash("", 8)
        )
    }

    /// CloudWatch alarm name for `purpose` (`function-errors`, …):
    /// `imagestack-<env>-<purpose>-<hash8>`.
    pub fn alarm_name(&self, purpose: &str) -> String {
        format!(
            "{NAME_PREFIX}-{}-{purpose}-{}",
            self.environment,
            self.hash("", 8)
        )
    }

    /// Resource-level tags: ownership tags first, then the user's (which cannot
    /// override ownership; the CRD rejects `imagestack.dev/` keys anyway).
    pub fn tags(
        &self,
        user: &std::collections::BTreeMap<String, String>,
    ) -> std::collections::BTreeMap<String, String> {
        let mut tags: std::collections::BTreeMap<String, String> = user
            .iter()
            .filter(|(k, _)| !k.starts_with("imagestack.dev/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.insert(OWNER_TAG.to_string(), self.owner_tag_value());
        if !self.cluster.is_empty() {
            tags.insert(CLUSTER_TAG.to_string(), self.cluster.clone());
        }
        tags.insert(ENVIRONMENT_TAG.to_string(), self.environment.clone());
        tags.insert(MANAGED_BY_TAG.to_string(), MANAGED_BY.to_string());
        tags
    }
}

/// Who owns a resource, judged from its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Tagged as this stack's, by this installation — or by a version of the
    /// operator from before installation ids (no cluster tag: adopted, and the
    /// tag is added by the next repair).
    Ours,
    /// Tagged as another stack's (`<namespace>/<name>`).
    OtherStack(String),
    /// Tagged as this namespace/name's, but by another installation (cluster id).
    OtherCluster(String),
    /// Not tagged by imagestack at all.
    Foreign,
}

impl Ownership {
    /// Who owns it, for a `NameConflict` message; `None` when it is ours.
    pub fn owner(&self) -> Option<String> {
        match self {
            Ownership::Ours => None,
            Ownership::OtherStack(other) => Some(format!("owned by stack {other}")),
            Ownership::OtherCluster(c) => Some(format!(
                "owned by a stack of the same namespace/name in another cluster (cluster id {c})"
            )),
            Ownership::Foreign => {
                Some("it carries no imagestack ownership tag or marker".to_string())
            }
        }
    }
}

/// Decide ownership from the owner (`<namespace>/<name>`) and cluster values a
/// resource carries (from tags, or from its body where it cannot be tagged).
pub fn ownership_of(id: &StackId, owner: Option<&str>, cluster: Option<&str>) -> Ownership {
    match owner {
        None => Ownership::Foreign,
        Some(v) if v != id.owner_tag_value() => Ownership::OtherStack(v.to_string()),
        Some(_) => match cluster {
            // Written before installation ids existed: ours (migration).
            None => Ownership::Ours,
            Some(c) if id.cluster.is_empty() || c == id.cluster => Ownership::Ours,
            Some(c) => Ownership::OtherCluster(c.to_string()),
        },
    }
}

/// Decide ownership from a resource's tags.
pub fn ownership<'a>(
    id: &StackId,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Ownership {
    let mut owner = None;
    let mut cluster = None;
    for (k, v) in tags {
        if k == OWNER_TAG {
            owner = Some(v);
        } else if k == CLUSTER_TAG {
            cluster = Some(v);
        }
    }
    ownership_of(id, owner, cluster)
}

/// The owner of a resource that cannot be tagged (CloudFront origin access
/// controls, functions, cache policies), written into its description or
/// comment: `imagestack <namespace>/<name> cluster=<cluster id>`, at most
/// `max_len` bytes and deterministic. When `<namespace>/<name>` does not fit,
/// its start, `~` and a hash of the identity (salted with `salt`) stand for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerNote {
    /// The field's length limit.
    pub max_len: usize,
    /// Salt of the hash that stands for a stack name too long to fit.
    pub salt: &'static str,
}

impl OwnerNote {
    /// Prefix of a note that marks a resource as imagestack's.
    pub const PREFIX: &'static str = "imagestack ";
    /// Separator of the installation's id.
    pub const CLUSTER_MARKER: &'static str = " cluster=";

    /// How the note names the stack when the installation id is
    /// `cluster_len` bytes long.
    fn owner_label(&self, id: &StackId, cluster_len: usize) -> String {
        let owner = id.owner_tag_value();
        let budget = self
            .max_len
            .saturating_sub(Self::PREFIX.len() + Self::CLUSTER_MARKER.len())
            .saturating_sub(cluster_len);
        if owner.len() <= budget {
            return owner;
        }
        let hash = id.hash(self.salt, 16);
        format!(
            "{}~{hash}",
            cut(&owner, budget.saturating_sub(hash.len() + 1))
        )
    }

    /// The form written before installation ids: `imagestack <namespace>/<name>`.
    pub fn legacy(&self, id: &StackId) -> String {
        cut(
            &format!("{}{}", Self::PREFIX, id.owner_tag_value()),
            self.max_len,
        )
        .to_string()
    }

    /// The note of stack `id` (the legacy form without an installation id).
    pub fn text(&self, id: &StackId) -> String {
        if id.cluster.is_empty() {
            return self.legacy(id);
        }
        cut(
            &format!(
                "{}{}{}{}",
                Self::PREFIX,
                self.owner_label(id, id.cluster.len()),
                Self::CLUSTER_MARKER,
                id.cluster
            ),
            self.max_len,
        )
        .to_string()
    }

    /// Who owns a resource with this note, from the point of view of stack
    /// `id`: this stack's current or legacy note → `Ours`; `imagestack <this
    /// stack> cluster=<other>` → `OtherCluster`; `imagestack <other
    /// stack>[ cluster=…]` → `OtherStack`; anything else → `Foreign`.
    pub fn ownership(&self, id: &StackId, note: &str) -> Ownership {
        if note == self.text(id) || note == self.legacy(id) {
            return Ownership::Ours;
        }
        let Some(rest) = note.strip_prefix(Self::PREFIX) else {
            return Ownership::Foreign;
        };
        // `<namespace>/<name>` contains no space: the first marker is the separator.
        let (owner, cluster) = match rest.split_once(Self::CLUSTER_MARKER) {
            Some((owner, cluster)) => (owner, Some(cluster)),
            None => (rest, None),
        };
        if owner.is_empty() || owner.contains(' ') {
            return Ownership::Foreign;
        }
        let ours = id.owner_tag_value();
        let same_stack = owner == ours
            || owner == self.owner_label(id, cluster.map(str::len).unwrap_or_default());
        ownership_of(id, Some(if same_stack { &ours } else { owner }), cluster)
    }
}

/// `s` cut to at most `max` bytes on a character boundary (the one cut every
/// name and message uses; messages add `…`, see `status::truncate`).
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// True if `name` is a valid S3 bucket name we are willing to manage: 3–63
/// characters of lowercase letters, digits and hyphens, starting and ending
/// with a letter or digit (no dots: transfer acceleration forbids them).
pub fn is_valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    #[test]
    fn bucket_names_are_valid_and_bounded() {
        let env = "a".repeat(20);
        let id = StackId::new("n".repeat(63), "x".repeat(253), env);
        for purpose in ["upload", "webp", "jpeg", "png"] {
            let name = id.bucket_name(purpose, "123456789012");
            assert!(name.len() <= 63, "{name} is {} long", name.len());
            assert!(is_valid_bucket_name(&name), "{name}");
            assert!(!name.contains('.'));
        }
        assert!(id.role_name().len() <= 64);
        assert!(id.table_name().len() <= 255);
    }

    #[test]
    fn names_are_deterministic() {
        let a = StackId::new("team-a", "images", "dev");
        let b = StackId::new("team-a", "images", "dev");
        assert_eq!(a.bucket_name("upload", "1"), b.bucket_name("upload", "1"));
        assert_eq!(a.table_name(), b.table_name());
        assert_eq!(a.role_name(), b.role_name());
    }

    #[test]
    fn no_collisions_across_namespaces_names_envs_accounts() {
        let mut seen = HashSet::new();
        for ns in ["default", "team-a", "team-b", "team-a-images"] {
            for name in ["images", "img", "images-dev", "a"] {
                for env in ["dev", "prod", "images-dev"] {
                    let id = StackId::new(ns, name, env);
                    for acct in ["111111111111", "222222222222"] {
                        for p in ["upload", "webp", "jpeg", "png"] {
                            assert!(seen.insert(id.bucket_name(p, acct)));
                        }
                    }
                    assert!(seen.insert(id.table_name()));
                    assert!(seen.insert(id.role_name()));
                }
            }
        }
        // Concatenation ambiguity: ("a-b","c") vs ("a","b-c") must differ.
        let x = StackId::new("a-b", "c", "dev");
        let y = StackId::new("a", "b-c", "dev");
        assert_ne!(x.table_name(), y.table_name());
    }

    #[test]
    fn bucket_name_validation() {
        assert!(is_valid_bucket_name("abc"));
        assert!(!is_valid_bucket_name("ab"));
        assert!(!is_valid_bucket_name("a.b.c"));
        assert!(!is_valid_bucket_name("-abc"));
        assert!(!is_valid_bucket_name("Abc"));
        assert!(!is_valid_bucket_name(&"a".repeat(64)));
    }

    #[test]
    fn ownership_from_tags() {
        let id = StackId::new("ns", "s", "dev");
        let tags = id.tags(&BTreeMap::from([("team".into(), "x".into())]));
        let it = tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        assert_eq!(ownership(&id, it), Ownership::Ours);
        let other = StackId::new("ns", "other", "dev");
        let it = tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        assert_eq!(
            ownership(&other, it),
            Ownership::OtherStack("ns/s".to_string())
        );
        assert_eq!(ownership(&id, [("team", "x")]), Ownership::Foreign);
        assert_eq!(tags.get("team").map(String::as_str), Some("x"));
    }

    #[test]
    fn ownership_includes_the_installation() {
        let a = StackId::new("ns", "s", "dev").in_cluster("cluster-a");
        let b = StackId::new("ns", "s", "dev").in_cluster("cluster-b");
        let tags_a = a.tags(&BTreeMap::new());
        assert_eq!(
            tags_a.get(CLUSTER_TAG).map(String::as_str),
            Some("cluster-a")
        );
        let it = || tags_a.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        assert_eq!(ownership(&a, it()), Ownership::Ours);
        assert_eq!(
            ownership(&b, it()),
            Ownership::OtherCluster("cluster-a".into())
        );
        // Names do not depend on the installation: upgrades keep every name.
        assert_eq!(a.table_name(), b.table_name());
        assert_eq!(a.bucket_name("upload", "1"), b.bucket_name("upload", "1"));
        // Tags written before installation ids: adopted by either installation.
        let legacy = [(OWNER_TAG, "ns/s")];
        assert_eq!(ownership(&a, legacy), Ownership::Ours);
        assert_eq!(ownership(&b, legacy), Ownership::Ours);
    }
}
