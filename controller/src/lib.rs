//! `parapet-controller`: where customers and the operator manage the CDN,
//! and what keeps every edge in step.

pub mod store;
