//! The key-file provider: master keys as `master-v<N>.key` files (mode 0600) in a directory.
//!
//! # File format (format 1)
//!
//! ```text
//! # Steward master key. Keep it secret and backed up: without it the vault cannot be read.
//! format=1
//! version=2
//! key=<standard base64 of 32 bytes>
//! ```
//!
//! Blank lines and lines starting with `#` are ignored; any other line must be one of the
//! three fields, each exactly once. `version` must match the `<N>` in the file name, so a
//! copied or renamed file is refused rather than silently used under the wrong version. Names
//! that do not match `master-v<N>.key` exactly (for instance the hidden temp files of an
//! interrupted write) are ignored.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Result, VaultError};
use crate::key_provider::KeyProvider;
use crate::master_key::{Keyring, MasterKey};

/// The `format=` value written and accepted.
pub const KEY_FILE_FORMAT: u32 = 1;

/// Key files are tiny; anything larger is refused before reading.
const MAX_KEY_FILE_LEN: u64 = 4096;
const PROVIDER_NAME: &str = "file";

/// Master keys stored as files in one directory (typically `<data dir>/keys`).
#[derive(Debug, Clone)]
pub struct FileKeyProvider {
    dir: PathBuf,
}

impl FileKeyProvider {
    /// A provider reading and writing key files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The key directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the file holding `version`.
    pub fn key_path(&self, version: u32) -> PathBuf {
        self.dir.join(file_name(version))
    }

    /// The key versions present on disk, ascending; empty when the directory does not exist.
    pub fn versions_on_disk(&self) -> Result<Vec<u32>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(VaultError::io(&self.dir, err)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| VaultError::io(&self.dir, err))?;
            if let Some(version) = entry.file_name().to_str().and_then(parse_file_name) {
                versions.push(version);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// Loads the keyring, generating version 1 on first start.
    ///
    /// When no key file exists and `data_exists` is true (the store already holds sealed
    /// values), no key is generated: a new key could not open that data, so this fails with
    /// [`VaultError::MasterKeyMissing`] and the operator must restore the key file.
    pub fn create_if_missing(&self, data_exists: bool) -> Result<Keyring> {
        if !self.versions_on_disk()?.is_empty() {
            return self.load();
        }
        if data_exists {
            return Err(VaultError::MasterKeyMissing {
                location: self.dir.display().to_string(),
                reason: "encrypted data exists but no master key file was found; refusing to \
                         generate a new key (restore the key file from backup)"
                    .to_owned(),
            });
        }
        let key = MasterKey::generate(1)?;
        match self.write_new_key_file(&key) {
            Ok(()) => {}
            // Another process created it first: use theirs.
            Err(VaultError::OperationRefused { .. }) => {}
            Err(err) => return Err(err),
        }
        self.load()
    }

    fn load_file(&self, version: u32) -> Result<MasterKey> {
        let path = self.key_path(version);
        let source_name = path.display().to_string();
        let file = File::open(&path).map_err(|err| VaultError::io(&path, err))?;
        let meta = file.metadata().map_err(|err| VaultError::io(&path, err))?;
        if !meta.is_file() {
            return Err(VaultError::malformed_key(source_name, "not a regular file"));
        }
        check_permissions(&path, &meta)?;
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(VaultError::malformed_key(
                source_name,
                format!("larger than {MAX_KEY_FILE_LEN} bytes"),
            ));
        }
        let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_LEN as usize));
        (&file)
            .take(MAX_KEY_FILE_LEN)
            .read_to_string(&mut text)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidData => {
                    VaultError::malformed_key(source_name.clone(), "not valid utf-8")
                }
                _ => VaultError::io(&path, err),
            })?;
        parse_key_file(&text, version, &source_name)
    }

    /// Writes `key` as a new file without ever replacing an existing one.
    ///
    /// Temp file (0600, fsync) → hard link to the final name (fails if it exists) → unlink the
    /// temp name → fsync the directory. Returns [`VaultError::OperationRefused`] if the version
    /// already exists.
    fn write_new_key_file(&self, key: &MasterKey) -> Result<()> {
        create_private_dir(&self.dir)?;
        let final_path = self.key_path(key.version());
        let temp_path = self.dir.join(format!(
            ".{}.tmp-{}-{}",
            file_name(key.version()),
            std::process::id(),
            random_suffix()?
        ));
        let contents = render_key_file(key);
        let written = write_synced(&temp_path, contents.as_bytes());
        if let Err(err) = written {
            let _ = fs::remove_file(&temp_path);
            return Err(err);
        }
        let linked = link_no_clobber(&temp_path, &final_path);
        let _ = fs::remove_file(&temp_path);
        match linked {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                return Err(VaultError::OperationRefused {
                    provider: PROVIDER_NAME.to_owned(),
                    reason: format!("key file `{}` already exists", final_path.display()),
                });
            }
            Err(err) => return Err(VaultError::io(&final_path, err)),
        }
        sync_dir(&self.dir)
    }
}

impl KeyProvider for FileKeyProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn load(&self) -> Result<Keyring> {
        let versions = self.versions_on_disk()?;
        if versions.is_empty() {
            return Err(VaultError::MasterKeyMissing {
                location: self.dir.display().to_string(),
                reason: "no `master-v<N>.key` file".to_owned(),
            });
        }
        let mut keys = Vec::with_capacity(versions.len());
        for version in versions {
            keys.push(self.load_file(version)?);
        }
        Keyring::new(keys)
    }

    fn create_next_version(&self) -> Result<Keyring> {
        let versions = self.versions_on_disk()?;
        let Some(&highest) = versions.last() else {
            return Err(VaultError::MasterKeyMissing {
                location: self.dir.display().to_string(),
                reason: "no existing master key to rotate from".to_owned(),
            });
        };
        // Refuse to rotate from a keyring that does not load (wrong permissions, bad file).
        self.load()?;
        let next = highest
            .checked_add(1)
            .ok_or_else(|| VaultError::OperationRefused {
                provider: PROVIDER_NAME.to_owned(),
                reason: "master key versions exhausted".to_owned(),
            })?;
        self.write_new_key_file(&MasterKey::generate(next)?)?;
        let keyring = self.load()?;
        if keyring.current().version() != next {
            return Err(VaultError::InvalidKeyring {
                reason: format!("expected current version `{next}` after rotation"),
            });
        }
        Ok(keyring)
    }

    fn retire_version(&self, version: u32, rows_still_using: u64) -> Result<()> {
        let refuse = |reason: String| VaultError::OperationRefused {
            provider: PROVIDER_NAME.to_owned(),
            reason,
        };
        if rows_still_using > 0 {
            return Err(refuse(format!(
                "{rows_still_using} sealed values still use master key version `{version}`; \
                 finish rewrapping first"
            )));
        }
        let versions = self.versions_on_disk()?;
        if !versions.contains(&version) {
            return Err(refuse(format!(
                "master key version `{version}` is not on disk"
            )));
        }
        if versions.last() == Some(&version) {
            return Err(refuse(format!(
                "master key version `{version}` is the current version"
            )));
        }
        let path = self.key_path(version);
        fs::remove_file(&path).map_err(|err| VaultError::io(&path, err))?;
        sync_dir(&self.dir)
    }
}

fn file_name(version: u32) -> String {
    format!("master-v{version}.key")
}

fn parse_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("master-v")?.strip_suffix(".key")?;
    let version: u32 = digits.parse().ok()?;
    // Canonical names only: `master-v01.key` or `master-v+1.key` are not key files.
    (version > 0 && file_name(version) == name).then_some(version)
}

fn render_key_file(key: &MasterKey) -> Zeroizing<String> {
    let encoded = key.to_base64();
    let header = format!(
        "# Steward master key. Keep it secret and backed up: without it the vault cannot be read.\n\
         # fingerprint {}\nformat={KEY_FILE_FORMAT}\nversion={}\nkey=",
        key.fingerprint(),
        key.version()
    );
    // Sized up front so no reallocation leaves a copy of the key behind.
    let mut out = Zeroizing::new(String::with_capacity(header.len() + encoded.len() + 1));
    out.push_str(&header);
    out.push_str(&encoded);
    out.push('\n');
    out
}

fn parse_key_file(text: &str, expected_version: u32, source_name: &str) -> Result<MasterKey> {
    let mut format: Option<&str> = None;
    let mut version: Option<&str> = None;
    let mut key: Option<&str> = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line_no = index + 1;
        // Error messages name the line, never its contents: it may hold key material.
        let Some((field, value)) = line.split_once('=') else {
            return Err(VaultError::malformed_key(
                source_name,
                format!("line {line_no} is not `field=value`"),
            ));
        };
        let slot = match field.trim() {
            "format" => &mut format,
            "version" => &mut version,
            "key" => &mut key,
            _ => {
                return Err(VaultError::malformed_key(
                    source_name,
                    format!("line {line_no} has an unknown field"),
                ));
            }
        };
        if slot.replace(value.trim()).is_some() {
            return Err(VaultError::malformed_key(
                source_name,
                format!("line {line_no} repeats a field"),
            ));
        }
    }
    let missing = |what: &str| VaultError::malformed_key(source_name, format!("missing `{what}=`"));
    let format = format.ok_or_else(|| missing("format"))?;
    if format.parse::<u32>().ok() != Some(KEY_FILE_FORMAT) {
        return Err(VaultError::malformed_key(
            source_name,
            format!("unsupported key file format (this build reads format {KEY_FILE_FORMAT})"),
        ));
    }
    let version_text = version.ok_or_else(|| missing("version"))?;
    if version_text.parse::<u32>().ok() != Some(expected_version) {
        return Err(VaultError::malformed_key(
            source_name,
            format!(
                "the `version=` field does not match the file name version `{expected_version}`"
            ),
        ));
    }
    let key = key.ok_or_else(|| missing("key"))?;
    MasterKey::from_base64(expected_version, key, source_name)
}

fn random_suffix() -> Result<String> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| VaultError::Crypto {
        what: "random generator failed",
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_synced(path: &Path, contents: &[u8]) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|err| VaultError::io(path, err))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|err| VaultError::io(path, err))
}

fn link_no_clobber(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::hard_link(from, to) {
        // File systems without hard links: check, then rename. Not atomic against a
        // concurrent creator, which the single-rotator rule excludes.
        Err(err) if err.kind() == ErrorKind::Unsupported => {
            if to.try_exists()? {
                return Err(ErrorKind::AlreadyExists.into());
            }
            fs::rename(from, to)
        }
        other => other,
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|err| VaultError::io(dir, err))?;
    // Make the directory entry itself durable in its parent.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|err| VaultError::io(dir, err))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(VaultError::InsecureKeyFile {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{open, rewrap, seal};
    use secrecy::ExposeSecret;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_provider() -> (tempfile::TempDir, FileKeyProvider) {
        let dir = tempfile::tempdir().unwrap();
        let provider = FileKeyProvider::new(dir.path().join("keys"));
        (dir, provider)
    }

    #[test]
    fn first_start_creates_a_private_key_file_and_reloads_it() {
        let (_dir, provider) = temp_provider();
        let ring = provider.create_if_missing(false).unwrap();
        assert_eq!(ring.current().version(), 1);
        let path = provider.key_path(1);
        #[cfg(unix)]
        {
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dir_mode = fs::metadata(provider.dir()).unwrap().permissions().mode() & 0o777;
            assert_eq!(dir_mode, 0o700);
        }
        // A second start loads the same key rather than generating another.
        let again = provider.create_if_missing(true).unwrap();
        assert_eq!(again.current().check_value(), ring.current().check_value());
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(provider.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["master-v1.key".to_owned()]);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("format=1\nversion=1\nkey="), "{text}");
        assert!(text.contains(ring.current().to_base64().as_str()));
    }

    #[test]
    fn refuses_to_create_when_data_already_exists() {
        let (_dir, provider) = temp_provider();
        let err = provider.create_if_missing(true).unwrap_err();
        assert!(matches!(err, VaultError::MasterKeyMissing { .. }), "{err}");
        assert_eq!(err.code().0, "VLT0001");
        assert!(provider.versions_on_disk().unwrap().is_empty());
        assert!(matches!(
            provider.load(),
            Err(VaultError::MasterKeyMissing { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_key_file_readable_by_group_or_others() {
        let (_dir, provider) = temp_provider();
        provider.create_if_missing(false).unwrap();
        let path = provider.key_path(1);
        for mode in [0o640, 0o604, 0o660, 0o644, 0o700 | 0o020] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = provider.load().unwrap_err();
            assert!(
                matches!(err, VaultError::InsecureKeyFile { .. }),
                "{mode:o}: {err}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        provider.load().unwrap();
    }

    fn write_raw(provider: &FileKeyProvider, name: &str, text: &str) {
        fs::create_dir_all(provider.dir()).unwrap();
        let path = provider.dir().join(name);
        fs::write(&path, text).unwrap();
        #[cfg(unix)]
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn malformed_key_files_give_clear_errors_without_echoing_keys() {
        let good = MasterKey::from_bytes(1, &[9u8; 32]).unwrap().to_base64();
        let cases = [
            ("".to_owned(), "missing `format=`"),
            (
                format!("{}\n", good.as_str()),
                "line 1 has an unknown field",
            ),
            ("just-a-line\n".to_owned(), "line 1 is not"),
            (
                format!(
                    "format=1\nversion=1\nkey={}\nkey={}\n",
                    good.as_str(),
                    good.as_str()
                ),
                "repeats",
            ),
            (
                format!("format=2\nversion=1\nkey={}\n", good.as_str()),
                "unsupported key file format",
            ),
            (
                format!("format=1\nversion=2\nkey={}\n", good.as_str()),
                "does not match",
            ),
            ("format=1\nversion=1\nkey=AAAA\n".to_owned(), "32 bytes"),
            (
                format!("format=1\nversion=1\n{}=x\n", good.as_str()),
                "unknown field",
            ),
            ("format=1\nversion=1\n".to_owned(), "missing `key=`"),
        ];
        for (text, expected) in cases {
            let (_dir, provider) = temp_provider();
            write_raw(&provider, "master-v1.key", &text);
            let err = provider.load().unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, VaultError::MalformedKey { .. }), "{msg}");
            assert!(msg.contains(expected), "{expected:?} not in {msg}");
            assert!(!msg.contains(&good[..20]), "key echoed: {msg}");
        }
        let (_dir, provider) = temp_provider();
        write_raw(
            &provider,
            "master-v1.key",
            "format=1\nversion=1\nkey=\u{0}\u{ff}\n",
        );
        assert!(provider.load().is_err());
        let (_dir, provider) = temp_provider();
        write_raw(&provider, "master-v1.key", &"#".repeat(5000));
        assert!(matches!(
            provider.load(),
            Err(VaultError::MalformedKey { .. })
        ));
    }

    #[test]
    fn only_canonical_file_names_are_key_files() {
        assert_eq!(parse_file_name("master-v1.key"), Some(1));
        assert_eq!(parse_file_name("master-v42.key"), Some(42));
        for name in [
            "master-v0.key",
            "master-v01.key",
            "master-v+1.key",
            "master-v1.key.bak",
            ".master-v1.key.tmp-1-ab",
            "master-v.key",
            "master.key",
        ] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn rotation_protocol_keeps_every_value_decryptable_at_each_step() {
        let (_dir, provider) = temp_provider();
        let ring_v1 = provider.create_if_missing(false).unwrap();
        let rows: Vec<(String, u32, crate::Sealed)> = (0..20)
            .map(|i| {
                let id = format!("sec_{i}");
                let sealed = seal(ring_v1.current(), &id, 1, id.as_bytes()).unwrap();
                (id, 1, sealed)
            })
            .collect();

        // Step 1: new version, durable; old rows still open with the reloaded keyring.
        let ring = provider.create_next_version().unwrap();
        assert_eq!(ring.current().version(), 2);
        assert_eq!(provider.versions_on_disk().unwrap(), vec![1, 2]);
        assert_eq!(provider.load().unwrap().current().version(), 2);

        // Step 2, interrupted half way (a crash): a fresh load still opens every row.
        let mut rows = rows;
        for row in rows.iter_mut().take(10) {
            row.2 = rewrap(&ring, ring.current(), &row.0, row.1, &row.2).unwrap();
        }
        let after_crash = provider.load().unwrap();
        for (id, version, sealed) in &rows {
            let value = open(&after_crash, id, *version, sealed).unwrap();
            assert_eq!(value.expose_secret(), id.as_bytes());
        }
        // Retiring now is refused: rows still use version 1.
        let still_v1 = rows.iter().filter(|r| r.2.key_version() == 1).count() as u64;
        assert_eq!(still_v1, 10);
        assert!(provider.retire_version(1, still_v1).is_err());

        // Resume step 2.
        for row in rows.iter_mut().filter(|r| r.2.key_version() != 2) {
            row.2 = rewrap(&after_crash, after_crash.current(), &row.0, row.1, &row.2).unwrap();
        }
        // Step 3.
        assert!(
            provider.retire_version(2, 0).is_err(),
            "current version retired"
        );
        provider.retire_version(1, 0).unwrap();
        assert_eq!(provider.versions_on_disk().unwrap(), vec![2]);
        let final_ring = provider.load().unwrap();
        for (id, version, sealed) in &rows {
            assert_eq!(
                open(&final_ring, id, *version, sealed)
                    .unwrap()
                    .expose_secret(),
                id.as_bytes()
            );
        }
        assert!(provider.retire_version(1, 0).is_err(), "already retired");
    }

    #[test]
    fn interrupted_key_write_leaves_only_an_ignored_temp_file() {
        let (_dir, provider) = temp_provider();
        provider.create_if_missing(false).unwrap();
        // Simulate a crash after the temp file was written but before the link.
        let key = MasterKey::generate(2).unwrap();
        let temp = provider.dir().join(".master-v2.key.tmp-1-00");
        write_synced(&temp, render_key_file(&key).as_bytes()).unwrap();
        assert_eq!(provider.versions_on_disk().unwrap(), vec![1]);
        assert_eq!(provider.load().unwrap().current().version(), 1);
        // Rotation still works afterwards and creates a different version-2 key.
        let ring = provider.create_next_version().unwrap();
        assert_eq!(ring.current().version(), 2);
        assert_ne!(ring.current().check_value(), key.check_value());
    }

    #[test]
    fn never_overwrites_an_existing_key_file() {
        let (_dir, provider) = temp_provider();
        let ring = provider.create_if_missing(false).unwrap();
        let other = MasterKey::generate(1).unwrap();
        let err = provider.write_new_key_file(&other).unwrap_err();
        assert!(matches!(err, VaultError::OperationRefused { .. }), "{err}");
        assert_eq!(
            provider.load().unwrap().current().check_value(),
            ring.current().check_value()
        );
    }

    #[test]
    fn rotation_requires_an_existing_key() {
        let (_dir, provider) = temp_provider();
        assert!(matches!(
            provider.create_next_version(),
            Err(VaultError::MasterKeyMissing { .. })
        ));
    }
}
