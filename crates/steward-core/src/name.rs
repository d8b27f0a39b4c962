//! Name normalisation: the one place that decides when two names are the same.

use unicode_normalization::UnicodeNormalization;

/// Normalises a name for comparison: NFKC, case-folded, surrounding whitespace trimmed.
///
/// `Billing-Bot` and `billing-bot ` normalise to the same key, and so do full-width
/// or compatibility spellings such as `ｂｉｌｌｉｎｇ`.
pub fn normalize(name: &str) -> String {
    // NFKC first so compatibility forms fold, lowercase, then NFKC again because
    // lowercasing can produce sequences that are not in normal form.
    let nfkc: String = name.trim().nfkc().collect();
    nfkc.to_lowercase()
        .nfkc()
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Checks that a name is usable as an identifier: 1–128 characters after
/// normalisation, no control characters.
pub fn validate(name: &str) -> Result<String, &'static str> {
    let n = normalize(name);
    if n.is_empty() {
        return Err("name is empty");
    }
    if n.chars().count() > 128 {
        return Err("name is longer than 128 characters");
    }
    if n.chars().any(|c| c.is_control()) {
        return Err("name contains control characters");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_whitespace_and_compatibility_forms_fold() {
        assert_eq!(normalize("Billing-Bot"), normalize("billing-bot "));
        assert_eq!(normalize("ｂｉｌｌｉｎｇ"), "billing");
        assert_eq!(normalize("ＢＩＬＬＩＮＧ"), "billing");
    }

    #[test]
    fn invalid_names_are_rejected() {
        assert!(validate("   ").is_err());
        assert!(validate("a\u{0007}b").is_err());
        assert!(validate(&"x".repeat(129)).is_err());
        assert_eq!(validate(" Ok ").as_deref(), Ok("ok"));
    }
}
