//! Stable operator-facing error codes, e.g. `VLT0003`.
//!
//! Codes never change meaning once released; docs and runbooks refer to them.

use std::fmt;

/// A stable error code shown to operators and in problem documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub &'static str);

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl ErrorCode {
    /// Configuration invalid.
    pub const CONFIG_INVALID: Self = Self("CFG0001");
    /// Storage unreachable or failing.
    pub const STORE_UNAVAILABLE: Self = Self("STO0001");
    /// Database written by a newer Steward.
    pub const STORE_SCHEMA_TOO_NEW: Self = Self("STO0002");
    /// Master key missing while encrypted data exists.
    pub const VAULT_MASTER_KEY_MISSING: Self = Self("VLT0001");
    /// Master key does not match existing data.
    pub const VAULT_MASTER_KEY_WRONG: Self = Self("VLT0002");
    /// Ciphertext failed authentication.
    pub const VAULT_DECRYPT_FAILED: Self = Self("VLT0003");
    /// Audit log cannot be written.
    pub const AUDIT_UNAVAILABLE: Self = Self("AUD0001");
    /// Policy evaluation failed; the request is denied.
    pub const POLICY_ERROR: Self = Self("POL0001");
    /// Token invalid.
    pub const TOKEN_INVALID: Self = Self("TOK0001");
}
