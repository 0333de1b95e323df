//! Answers a viewer from a stored object: the whole response, `304 Not
//! Modified` for a matching conditional request, `206 Partial Content` for a
//! single satisfiable `Range`, and headers only for `HEAD`.

use std::ops::Bound;
use std::time::SystemTime;

use bytes::Bytes;
use headers::{
    ContentRange, ETag, HeaderMapExt, IfModifiedSince, IfNoneMatch, IfRange, LastModified, Range,
};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

use super::object::CachedObject;
use super::parts::Parts;

/// A response built from the cache, before the viewer-response plugins.
pub struct StoredAnswer {
    /// Status: the object's, or 304, 206 or 416.
    pub status: StatusCode,
    /// Headers with `Age` set.
    pub headers: HeaderMap,
    /// The body to send (empty for `HEAD` and 304).
    pub body: Bytes,
}

/// Fields a 304 carries from the stored response (RFC 9110 15.4.5).
const NOT_MODIFIED_FIELDS: [header::HeaderName; 7] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
];

/// The answer to a viewer's `method` and `request` headers from `object`.
pub fn answer(
    object: &CachedObject,
    method: &Method,
    request: &HeaderMap,
    now: SystemTime,
) -> StoredAnswer {
    let mut headers = object.headers.clone();
    let age = object.age(now).as_secs();
    headers.insert(header::AGE, HeaderValue::from(age));
    let etag: Option<ETag> = object.headers.typed_get();
    let last_modified: Option<LastModified> = object.headers.typed_get();
    if object.status == StatusCode::OK && not_modified(request, etag.as_ref(), last_modified) {
        let mut kept = HeaderMap::new();
        for name in NOT_MODIFIED_FIELDS {
            for value in headers.get_all(&name) {
                kept.append(name.clone(), value.clone());
            }
        }
        kept.insert(header::AGE, HeaderValue::from(age));
        return StoredAnswer {
            status: StatusCode::NOT_MODIFIED,
            headers: kept,
            body: Bytes::new(),
        };
    }
    let full_length = object.body.len() as u64;
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(full_length));
    let mut status = object.status;
    let mut body = object.body.clone();
    if object.status == StatusCode::OK && *method == Method::GET {
        match requested_range(request, etag.as_ref(), last_modified, full_length) {
            RangeAnswer::Whole => {}
            RangeAnswer::Part(start, end) => {
                status = StatusCode::PARTIAL_CONTENT;
                body = object.body.slice(start as usize..=end as usize);
                headers.typed_insert(
                    ContentRange::bytes(start..=end, full_length)
                        .expect("start <= end < length was checked"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            }
            RangeAnswer::Unsatisfiable => {
                status = StatusCode::RANGE_NOT_SATISFIABLE;
                body = Bytes::new();
                headers.typed_insert(ContentRange::unsatisfied_bytes(full_length));
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            }
        }
    }
    if *method == Method::HEAD {
        body = Bytes::new();
    }
    StoredAnswer {
        status,
        headers,
        body,
    }
}

/// The answer to a viewer's `GET` with a `Range` from stored `parts`: 304
/// for a matching conditional request, the range when one stored segment
/// holds it, 416 when it lies outside the object. `None` when the parts
/// cannot answer: the range is not stored, or the request asks for the
/// whole (several ranges, or an `If-Range` that no longer matches).
pub fn answer_from_parts(
    parts: &Parts,
    request: &HeaderMap,
    now: SystemTime,
) -> Option<StoredAnswer> {
    let object = &parts.object;
    let etag: Option<ETag> = object.headers.typed_get();
    let last_modified: Option<LastModified> = object.headers.typed_get();
    if not_modified(request, etag.as_ref(), last_modified) {
        return Some(answer(object, &Method::GET, request, now));
    }
    let mut headers = object.headers.clone();
    headers.insert(header::AGE, HeaderValue::from(object.age(now).as_secs()));
    let range = requested_range(request, etag.as_ref(), last_modified, parts.length);
    let (status, body) = match range {
        RangeAnswer::Whole => return None,
        RangeAnswer::Part(first, last) => {
            let body = parts.bytes(first, last)?;
            headers.typed_insert(
                ContentRange::bytes(first..=last, parts.length)
                    .expect("first <= last < length was checked"),
            );
            (StatusCode::PARTIAL_CONTENT, body)
        }
        RangeAnswer::Unsatisfiable => {
            headers.typed_insert(ContentRange::unsatisfied_bytes(parts.length));
            (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Some(StoredAnswer {
        status,
        headers,
        body,
    })
}

/// Whether a conditional request is satisfied by the stored validators:
/// `If-None-Match` when present, else `If-Modified-Since`.
fn not_modified(
    request: &HeaderMap,
    etag: Option<&ETag>,
    last_modified: Option<LastModified>,
) -> bool {
    if let Some(if_none_match) = request.typed_get::<IfNoneMatch>() {
        return etag.is_some_and(|etag| !if_none_match.precondition_passes(etag));
    }
    match (request.typed_get::<IfModifiedSince>(), last_modified) {
        (Some(since), Some(modified)) => !since.is_modified(SystemTime::from(modified)),
        _ => false,
    }
}

enum RangeAnswer {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// The one range a request asks for, if it asks for exactly one and its
/// `If-Range` (if any) still matches. Several ranges get the whole object.
fn requested_range(
    request: &HeaderMap,
    etag: Option<&ETag>,
    last_modified: Option<LastModified>,
    length: u64,
) -> RangeAnswer {
    let Some(range) = request.typed_get::<Range>() else {
        return RangeAnswer::Whole;
    };
    if let Some(if_range) = request.typed_get::<IfRange>() {
        if if_range.is_modified(etag, last_modified.as_ref()) {
            return RangeAnswer::Whole;
        }
    }
    let ranges: Vec<_> = range.satisfiable_ranges(length).collect();
    let [(start, end)] = ranges.as_slice() else {
        // A suffix longer than the object asks for all of it (RFC 9110
        // 14.1.3); the `headers` crate drops such a range.
        let suffix = request
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("bytes=-"));
        return if ranges.is_empty() && !suffix {
            RangeAnswer::Unsatisfiable
        } else {
            RangeAnswer::Whole
        };
    };
    let first = match start {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s + 1,
        Bound::Unbounded => 0,
    };
    let last = match end {
        Bound::Included(e) => (*e).min(length.saturating_sub(1)),
        Bound::Excluded(e) => e.saturating_sub(1).min(length.saturating_sub(1)),
        Bound::Unbounded => length.saturating_sub(1),
    };
    if length == 0 || first > last {
        RangeAnswer::Unsatisfiable
    } else {
        RangeAnswer::Part(first, last)
    }
}
