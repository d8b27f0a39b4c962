//! Fuzzes OpenAPI import (JSON and YAML), routing and argument extraction.
//!
//! Import must return an error, never panic or hang, on any input; an imported catalog
//! must rebuild from its own operations and route a request built from each template.

#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_gateway::openapi::{ServiceCatalog, extract_args};
use steward_gateway::path::NormalizedPath;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(catalog) = ServiceCatalog::from_openapi(text) else {
        return;
    };
    let rebuilt = ServiceCatalog::new(catalog.operations().to_vec())
        .unwrap_or_else(|error| panic!("an imported catalog must rebuild: {error}"));
    assert_eq!(rebuilt.operations(), catalog.operations());
    for op in catalog.operations() {
        // Fill every `{param}` with `1` and route the result.
        let mut rest = String::new();
        let mut in_param = false;
        for c in op.path_template.chars() {
            match c {
                '{' => in_param = true,
                '}' => {
                    in_param = false;
                    rest.push('1');
                }
                c if !in_param => rest.push(c),
                _ => {}
            }
        }
        let Ok(path) = NormalizedPath::from_parts("svc", &rest) else {
            continue;
        };
        if let Some(matched) = catalog.match_request(&op.method, &path) {
            let _ = extract_args(&matched, Some("a=1&b=true"), None);
            let _ = extract_args(&matched, None, Some(&serde_json::json!({"a": 1})));
        }
    }
});
