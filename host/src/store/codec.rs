//! Versioned binary encoding of stored records.
//!
//! Every record starts with a format version byte so that a later release
//! can read what an earlier one wrote; the body is postcard (compact, fast).

use serde::{Serialize, de::DeserializeOwned};

use super::StoreError;

const FORMAT_V1: u8 = 1;

/// Encodes a record for storage in `tree`.
pub fn encode<T: Serialize>(tree: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT_V1];
    let body = postcard::to_stdvec(value).map_err(|e| StoreError::Corrupt {
        tree,
        detail: format!("cannot encode: {e}"),
    })?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a record written by [`encode`].
pub fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
            tree,
            detail: e.to_string(),
        }),
        Some((version, _)) => Err(StoreError::Corrupt {
            tree,
            detail: format!("unknown record format version {version}"),
        }),
        None => Err(StoreError::Corrupt {
            tree,
            detail: "empty record".into(),
        }),
    }
}
