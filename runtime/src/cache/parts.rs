//! Partial content (RFC 9111 3.3 and 3.4): `206` answers kept as parts of
//! one representation, combined only when they share a strong validator
//! and a complete length, and made the whole object once they cover it.
//! A part is never served as the whole.

use bytes::{Bytes, BytesMut};
use headers::{ContentRange, HeaderMapExt};
use http::{header, HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::object::CachedObject;

/// The stored parts of one representation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parts {
    /// The representation as the whole would be stored: status 200, the
    /// part's headers without `Content-Range` and `Content-Length`, the
    /// freshness and purge metadata of the latest part; no body.
    pub object: CachedObject,
    /// The complete length, from `Content-Range`.
    pub length: u64,
    /// Stored byte ranges: first byte and bytes, sorted, neither
    /// overlapping nor adjacent.
    segments: Vec<(u64, Bytes)>,
}

/// One `206` answer to store.
pub struct Part {
    /// The representation's metadata, as in [`Parts::object`].
    pub object: CachedObject,
    /// Its complete length.
    pub length: u64,
    /// The first byte the part holds.
    pub first: u64,
    /// The part's bytes.
    pub body: Bytes,
}

/// Where a `206`'s bytes belong: `first..=last` of `length` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRange {
    /// First byte.
    pub first: u64,
    /// Last byte (inclusive).
    pub last: u64,
    /// Complete length of the representation.
    pub length: u64,
}

impl PartRange {
    /// The range of a `206` that may be stored as a part: one byte range
    /// with a known complete length (not `multipart/byteranges`, not
    /// `*/`), and a strong `ETag` to combine parts by.
    pub fn of(status: StatusCode, headers: &HeaderMap) -> Option<PartRange> {
        if status != StatusCode::PARTIAL_CONTENT || !has_strong_etag(headers) {
            return None;
        }
        let range: ContentRange = headers.typed_get()?;
        let (first, last) = range.bytes_range()?;
        let length = range.bytes_len()?;
        (first <= last && last < length).then_some(PartRange {
            first,
            last,
            length,
        })
    }

    /// Bytes in the range.
    pub fn size(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// A strong validator: an `ETag` that is not weak (`W/`).
fn has_strong_etag(headers: &HeaderMap) -> bool {
    headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|etag| etag.starts_with('"'))
}

impl Parts {
    /// `stored` with `part` added when both are parts of the same
    /// representation (same strong `ETag`, same complete length); else
    /// `part` alone replaces them. The newest part's metadata is kept.
    pub fn combine(stored: Option<Parts>, part: Part) -> Parts {
        let same = |parts: &Parts| {
            parts.length == part.length
                && has_strong_etag(&part.object.headers)
                && parts.object.headers.get(header::ETAG) == part.object.headers.get(header::ETAG)
        };
        let mut segments = match stored {
            Some(parts) if same(&parts) => parts.segments,
            _ => Vec::new(),
        };
        segments.push((part.first, part.body));
        Parts {
            object: part.object,
            length: part.length,
            segments: coalesce(segments),
        }
    }

    /// The bytes `first..=last`, if one stored segment holds them.
    pub fn bytes(&self, first: u64, last: u64) -> Option<Bytes> {
        self.segments.iter().find_map(|(start, bytes)| {
            let end = start + bytes.len() as u64;
            (*start <= first && last < end)
                .then(|| bytes.slice((first - start) as usize..=(last - start) as usize))
        })
    }

    /// Bytes stored.
    pub fn stored_bytes(&self) -> usize {
        self.segments.iter().map(|(_, bytes)| bytes.len()).sum()
    }

    /// The whole object, once the parts cover it.
    pub fn whole(&self) -> Option<CachedObject> {
        match self.segments.as_slice() {
            [(0, bytes)] if bytes.len() as u64 == self.length => {
                let mut object = self.object.clone();
                object.status = StatusCode::OK;
                object.body = bytes.clone();
                Some(object)
            }
            _ => None,
        }
    }
}

/// Sorts `segments` and merges those that overlap or touch.
fn coalesce(mut segments: Vec<(u64, Bytes)>) -> Vec<(u64, Bytes)> {
    segments.sort_by_key(|(start, _)| *start);
    let mut out: Vec<(u64, Bytes)> = Vec::with_capacity(segments.len());
    for (start, bytes) in segments {
        let Some((last_start, last_bytes)) = out.last_mut() else {
            out.push((start, bytes));
            continue;
        };
        let last_end = *last_start + last_bytes.len() as u64;
        if start > last_end {
            out.push((start, bytes));
            continue;
        }
        let end = start + bytes.len() as u64;
        if end > last_end {
            let mut joined = BytesMut::with_capacity((end - *last_start) as usize);
            joined.extend_from_slice(last_bytes);
            joined.extend_from_slice(&bytes[(last_end - start) as usize..]);
            *last_bytes = joined.freeze();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::object::PurgeMeta;
    use http::HeaderValue;
    use http_cache_semantics::CachePolicy;

    fn object(etag: &str) -> CachedObject {
        let request = http::Request::get("http://example.com/v").body(()).unwrap();
        let response = http::Response::new(());
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_str(etag).unwrap());
        CachedObject {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
            policy: CachePolicy::new(&request, &response),
            stored_at_ms: 0,
            ttl_ms: 0,
            stale_while_revalidate_ms: 0,
            stale_if_error_ms: 0,
            invalidated: false,
            meta: PurgeMeta::default(),
        }
    }

    fn part(etag: &str, first: u64, body: &'static [u8], length: u64) -> Part {
        Part {
            object: object(etag),
            length,
            first,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn overlapping_and_adjacent_parts_merge_into_the_whole() {
        let parts = Parts::combine(None, part("\"a\"", 4, b"efgh", 10));
        assert!(parts.bytes(0, 3).is_none());
        let parts = Parts::combine(Some(parts), part("\"a\"", 0, b"abcdef", 10));
        assert_eq!(parts.segments.len(), 1);
        assert_eq!(parts.bytes(2, 7).unwrap(), "cdefgh");
        let parts = Parts::combine(Some(parts), part("\"a\"", 8, b"ij", 10));
        let whole = parts.whole().expect("covers 0..10");
        assert_eq!(whole.body, "abcdefghij");
        assert_eq!(whole.status, StatusCode::OK);
    }

    #[test]
    fn a_gap_keeps_the_parts_apart_and_never_whole() {
        let parts = Parts::combine(None, part("\"a\"", 0, b"abc", 10));
        let parts = Parts::combine(Some(parts), part("\"a\"", 5, b"fghij", 10));
        assert_eq!(parts.stored_bytes(), 8);
        assert!(parts.bytes(2, 5).is_none(), "bytes 3 and 4 are missing");
        assert_eq!(parts.bytes(5, 9).unwrap(), "fghij");
        assert!(parts.whole().is_none());
    }

    #[test]
    fn another_validator_or_length_replaces_the_parts() {
        let parts = Parts::combine(None, part("\"a\"", 0, b"abcde", 10));
        let parts = Parts::combine(Some(parts), part("\"b\"", 5, b"FGHIJ", 10));
        assert!(
            parts.bytes(0, 0).is_none(),
            "parts of another version dropped"
        );
        let parts = Parts::combine(Some(parts), part("\"b\"", 0, b"ABCDE", 11));
        assert!(
            parts.bytes(5, 5).is_none(),
            "another length is another version"
        );
        assert_eq!(parts.bytes(0, 4).unwrap(), "ABCDE");
    }

    #[test]
    fn only_single_ranges_with_strong_validators_and_known_length_are_parts() {
        let headers = |range: &str, etag: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_RANGE, HeaderValue::from_str(range).unwrap());
            h.insert(header::ETAG, HeaderValue::from_str(etag).unwrap());
            h
        };
        let ok = headers("bytes 0-99/1000", "\"v1\"");
        assert_eq!(
            PartRange::of(StatusCode::PARTIAL_CONTENT, &ok),
            Some(PartRange {
                first: 0,
                last: 99,
                length: 1000
            })
        );
        assert_eq!(PartRange::of(StatusCode::OK, &ok), None);
        let weak = headers("bytes 0-99/1000", "W/\"v1\"");
        assert_eq!(PartRange::of(StatusCode::PARTIAL_CONTENT, &weak), None);
        let unknown = headers("bytes 0-99/*", "\"v1\"");
        assert_eq!(PartRange::of(StatusCode::PARTIAL_CONTENT, &unknown), None);
        let mut none = ok.clone();
        none.remove(header::CONTENT_RANGE);
        assert_eq!(PartRange::of(StatusCode::PARTIAL_CONTENT, &none), None);
    }
}
