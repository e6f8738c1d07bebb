//! Server-side apply that writes only when the rendered object changed.
//!
//! Every applied object carries the SHA-256 of its rendered form in an annotation. Before an
//! apply the live object is read: when its annotation equals the new hash, nothing is sent. So
//! a reconcile of an unchanged cluster, and a restart of the operator, issue no PATCH at all.
//!
//! NOTE: a child edited by hand keeps the annotation, so the operator does not undo the edit
//! until the ImCluster changes what it renders for that child. Comparing every rendered field
//! with the live object would undo such edits at once, at the cost of tracking the defaults
//! and normal forms the API server writes back (quantities, ports, probes).

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::render::MANAGER;

/// The annotation holding the hash of what the operator last applied.
pub const HASH_ANNOTATION: &str = "im.dolphin.dev/applied-hash";

/// What an apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Applied,
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("failed to serialize {kind} {name}")]
    Serialize { kind: String, name: String, source: serde_json::Error },
    #[error("failed to read {kind} {name}")]
    Read { kind: String, name: String, source: kube::Error },
    #[error("failed to apply {kind} {name}")]
    Apply { kind: String, name: String, source: kube::Error },
}

/// The hash of an object as rendered (without the annotation itself).
pub fn hash<K: Serialize>(object: &K) -> Result<String, serde_json::Error> {
    let bytes = serde_json::to_vec(object)?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// The object with its hash annotation.
pub fn annotated<K: Resource + Serialize>(mut object: K) -> Result<(K, String), serde_json::Error> {
    let hash = hash(&object)?;
    object.annotations_mut().insert(HASH_ANNOTATION.to_owned(), hash.clone());
    Ok((object, hash))
}

/// Applies `object` with the operator's field manager unless the live object already carries
/// the same hash.
pub async fn apply<K>(api: &Api<K>, kind: &str, object: K) -> Result<Outcome, ApplyError>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.name_any();
    let (object, hash) = annotated(object).map_err(|source| ApplyError::Serialize {
        kind: kind.to_owned(),
        name: name.clone(),
        source,
    })?;
    let live = api.get_opt(&name).await.map_err(|source| ApplyError::Read {
        kind: kind.to_owned(),
        name: name.clone(),
        source,
    })?;
    if live.is_some_and(|live| live.annotations().get(HASH_ANNOTATION) == Some(&hash)) {
        return Ok(Outcome::Unchanged);
    }
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&object)).await.map_err(|source| {
        ApplyError::Apply { kind: kind.to_owned(), name: name.clone(), source }
    })?;
    Ok(Outcome::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{edge, fixtures};

    #[test]
    fn the_hash_changes_with_the_spec_and_only_with_it() {
        let cluster = fixtures::standard();
        let (a, hash_a) = annotated(edge::deployment(&cluster).unwrap()).unwrap();
        let (_, again) = annotated(edge::deployment(&cluster).unwrap()).unwrap();
        assert_eq!(hash_a, again);
        assert_eq!(a.annotations()[HASH_ANNOTATION], hash_a);

        let mut scaled = cluster.clone();
        scaled.spec.edge.replicas = 3;
        let (_, hash_b) = annotated(edge::deployment(&scaled).unwrap()).unwrap();
        assert_ne!(hash_a, hash_b);
    }
}
