//! PostgreSQL role administration for rotation and leases: change a role's password, create a
//! short-lived login role in a group, drop it.
//!
//! Passwords never travel as plaintext in SQL: Steward computes the SCRAM-SHA-256 verifier
//! itself and sends that (`PASSWORD 'SCRAM-SHA-256$…'`), so neither PostgreSQL's statement log
//! nor sqlx's (disabled on these connections anyway) can hold a usable password. DDL cannot
//! take bind parameters, so role names are checked against a strict pattern and quoted.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use zeroize::Zeroizing;

use crate::runtime::{RuntimeError, random_bytes};

/// SCRAM iteration count (PostgreSQL's default).
const SCRAM_ITERATIONS: u32 = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts `[a-z_][a-z0-9_]*`, at most 63 bytes: safe to quote into DDL.
pub fn check_role_name(name: &str) -> Result<(), RuntimeError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || name.len() > 63
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(RuntimeError::Invalid(format!(
            "PostgreSQL role `{name}` must match [a-z_][a-z0-9_]* and be at most 63 bytes"
        )));
    }
    Ok(())
}

/// A random password: 256 bits, URL-safe base64 (no quoting issues anywhere).
pub fn generate_password() -> Zeroizing<String> {
    let bytes = Zeroizing::new(random_bytes::<32>());
    Zeroizing::new(URL_SAFE_NO_PAD.encode(*bytes))
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677 with a random
/// salt): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
pub fn scram_verifier(password: &str) -> String {
    use aws_lc_rs::{digest, hmac, pbkdf2};
    let salt = random_bytes::<16>();
    let mut salted = Zeroizing::new([0u8; 32]);
    let iterations =
        std::num::NonZeroU32::new(SCRAM_ITERATIONS).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        salted.as_mut_slice(),
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, salted.as_slice());
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref())
    )
}

fn external(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::External(format!("postgresql: {what}: {e}"))
}

/// Runs one DDL statement. Only called with role names that passed [`check_role_name`] and
/// literals Steward generated (SCRAM verifiers, timestamps), none holding a quote.
async fn ddl(conn: &mut PgConnection, what: &str, sql: String) -> Result<(), RuntimeError> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| external(what, e))
}

/// An admin connection with statement logging off.
async fn connect(dsn: &str) -> Result<PgConnection, RuntimeError> {
    let options = PgConnectOptions::from_str(dsn)
        .map_err(|_| RuntimeError::Invalid("the PostgreSQL admin URL is not valid".into()))?
        .disable_statement_logging();
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| RuntimeError::External("postgresql: connect timed out".into()))?
        .map_err(|e| external("connect", e))
}

/// `ALTER ROLE <role> PASSWORD '<scram verifier>'`.
pub async fn set_password(dsn: &str, role: &str, password: &str) -> Result<(), RuntimeError> {
    check_role_name(role)?;
    let mut conn = connect(dsn).await?;
    let result = ddl(
        &mut conn,
        "alter role",
        format!(
            "ALTER ROLE \"{role}\" PASSWORD '{}'",
            scram_verifier(password)
        ),
    )
    .await;
    let _ = conn.close().await;
    result
}

/// Creates a login role valid until `valid_until_ms`, member of `group_role`.
pub async fn create_login_role(
    dsn: &str,
    username: &str,
    password: &str,
    valid_until_ms: i64,
    group_role: &str,
) -> Result<(), RuntimeError> {
    check_role_name(username)?;
    check_role_name(group_role)?;
    let until = jiff::Timestamp::from_millisecond(valid_until_ms)
        .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    let mut conn = connect(dsn).await?;
    let statement = format!(
        "CREATE ROLE \"{username}\" LOGIN PASSWORD '{}' VALID UNTIL '{until}' IN ROLE \"{group_role}\"",
        scram_verifier(password)
    );
    let result = ddl(&mut conn, "create role", statement).await;
    let _ = conn.close().await;
    result
}

/// Ends a lease role: stops its sessions, hands its objects to the admin, drops it.
/// Returns whether the role existed.
pub async fn drop_login_role(dsn: &str, username: &str) -> Result<bool, RuntimeError> {
    check_role_name(username)?;
    let mut conn = connect(dsn).await?;
    let result = async {
        let exists = sqlx::query("SELECT 1 AS one FROM pg_roles WHERE rolname = $1")
            .bind(username)
            .fetch_optional(&mut conn)
            .await
            .map_err(|e| external("lookup role", e))?
            .is_some();
        if !exists {
            return Ok(false);
        }
        // Refuse new logins first, then end the sessions that exist.
        ddl(
            &mut conn,
            "alter role",
            format!("ALTER ROLE \"{username}\" NOLOGIN"),
        )
        .await?;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(username)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| external("terminate sessions", e))?;
        ddl(
            &mut conn,
            "reassign owned",
            format!("REASSIGN OWNED BY \"{username}\" TO CURRENT_USER"),
        )
        .await?;
        ddl(
            &mut conn,
            "drop owned",
            format!("DROP OWNED BY \"{username}\""),
        )
        .await?;
        ddl(
            &mut conn,
            "drop role",
            format!("DROP ROLE IF EXISTS \"{username}\""),
        )
        .await?;
        Ok(true)
    }
    .await;
    let _ = conn.close().await;
    result
}

/// Whether `role` exists (used by tests and status).
pub async fn role_exists(dsn: &str, role: &str) -> Result<bool, RuntimeError> {
    let mut conn = connect(dsn).await?;
    let row = sqlx::query("SELECT COUNT(*) AS n FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| external("lookup role", e))?;
    let n: i64 = row.try_get("n").map_err(|e| external("lookup role", e))?;
    let _ = conn.close().await;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_strict() {
        for ok in ["app", "_x", "stw_lease_0a1b", "a1"] {
            check_role_name(ok).unwrap();
        }
        for bad in [
            "",
            "App",
            "1a",
            "a-b",
            "a\"b",
            "a b",
            "a;drop",
            &"a".repeat(64),
        ] {
            assert!(check_role_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_random_and_safe() {
        let a = generate_password();
        let b = generate_password();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn scram_verifier_has_postgres_shape_and_hides_the_password() {
        let v = scram_verifier("s3cret-password");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("s3cret"));
        let (_, keys) = v
            .split_once('$')
            .and_then(|(a, rest)| rest.split_once('$').map(|(_, k)| (a, k)))
            .unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        assert_eq!(STANDARD.decode(stored).unwrap().len(), 32);
        assert_eq!(STANDARD.decode(server).unwrap().len(), 32);
        assert!(!v.contains('\''));
        // Salted: two verifiers of one password differ.
        assert_ne!(v, scram_verifier("s3cret-password"));
    }
}
