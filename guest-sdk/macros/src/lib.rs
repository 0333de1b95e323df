//! `#[parapet_sdk::hooks]`, re-exported by `parapet-sdk`: put it on a
//! plugin's `impl Plugin for ...` block and it sets `Plugin::HOOKS` to the
//! hooks the block defines, so the edge calls (and instantiates the plugin
//! for) only those.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{parse_macro_input, parse_quote, ImplItem, ItemImpl};

/// Trait methods that are hooks, and their `Hooks` constants.
const HOOKS: [(&str, &str); 4] = [
    ("on_viewer_request", "VIEWER_REQUEST"),
    ("on_origin_request", "ORIGIN_REQUEST"),
    ("on_origin_response", "ORIGIN_RESPONSE"),
    ("on_viewer_response", "VIEWER_RESPONSE"),
];

/// Sets `const HOOKS` in an `impl Plugin for ...` block to the hooks it
/// defines.
#[proc_macro_attribute]
pub fn hooks(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[hooks] takes no arguments: it lists the hooks the impl block defines",
        )
        .to_compile_error()
        .into();
    }
    let mut block = parse_macro_input!(item as ItemImpl);
    let defined: Vec<String> = block
        .items
        .iter()
        .filter_map(|item| match item {
            ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
            _ => None,
        })
        .collect();
    let hooks = HOOKS
        .iter()
        .filter(|(method, _)| defined.iter().any(|d| d == method))
        .map(|(_, constant)| format_ident!("{constant}"));
    block.items.push(parse_quote! {
        const HOOKS: ::parapet_sdk::Hooks =
            ::parapet_sdk::Hooks::NONE #(.with(::parapet_sdk::Hooks::#hooks))*;
    });
    quote!(#block).into()
}
