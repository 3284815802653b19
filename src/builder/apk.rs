//! The built APK: finding the newest one, its size and SHA-256, and the app's version values
//! read from `app/build.gradle` or `app/build.gradle.kts`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::protocol::ApkInfo;

/// Where Gradle puts APKs, relative to the project root.
pub const APK_DIR: &str = "app/build/outputs/apk";

/// The most recently modified `*.apk` under `dir`, searched recursively.
pub fn newest_apk(dir: &Path) -> Option<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "apk"))
        .filter_map(|e| {
            let modified = e.metadata().ok()?.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            Some((modified, e.into_path()))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, path)| path)
}

/// Size and lowercase-hex SHA-256 of a file, streamed (APKs can be hundreds of MB).
pub fn size_and_hash(path: &Path) -> Result<(u64, String)> {
    // A regular file only: an "APK" that is a FIFO or a device would never end.
    let mut file = crate::project_file::open_regular(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("could not read {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let hash = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, hash))
}

/// `apkInfo` for the APK at `apk`: file facts plus the values found in the app's Gradle file.
pub fn apk_info(project: &Path, apk: &Path) -> Result<ApkInfo> {
    let (size, hash) = size_and_hash(apk)?;
    let values = ["app/build.gradle.kts", "app/build.gradle"]
        .iter()
        .find_map(|name| {
            let path = project.join(name);
            crate::project_file::read_to_string(project, &path, crate::project_file::BUILD_FILE_MAX)
                .inspect_err(|e| {
                    if !e.is_not_found() {
                        tracing::warn!("apkInfo without the app's values: {e}");
                    }
                })
                .ok()
        })
        .map(|text| GradleValues::parse(&text))
        .unwrap_or_default();
    Ok(ApkInfo {
        path: apk.display().to_string(),
        size,
        hash,
        version_code: values.version_code,
        version_name: values.version_name,
        min_sdk_version: values.min_sdk,
        target_sdk_version: values.target_sdk,
        application_id: values.application_id,
    })
}

/// Literal values from a Gradle build file. Anything not written as a plain literal (a
/// variable, a version catalog reference) is `None`: reported as missing, never guessed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GradleValues {
    pub application_id: Option<String>,
    pub version_code: Option<u64>,
    pub version_name: Option<String>,
    pub min_sdk: Option<u32>,
    pub target_sdk: Option<u32>,
}

impl GradleValues {
    /// Parses Groovy (`minSdk 24`, `versionName "1.0"`) and Kotlin DSL (`minSdk = 24`,
    /// `minSdkVersion(24)`) syntaxes. `defaultConfig { }` wins over other blocks (flavors).
    pub fn parse(text: &str) -> Self {
        let default_config = default_config_block(text);
        let find = |keys: &[&str]| {
            default_config
                .and_then(|block| find_value(block, keys))
                .or_else(|| find_value(text, keys))
        };
        Self {
            application_id: find(&["applicationId"]).and_then(string_literal),
            version_code: find(&["versionCode"]).and_then(|v| v.parse().ok()),
            version_name: find(&["versionName"]).and_then(string_literal),
            min_sdk: find(&["minSdk", "minSdkVersion"]).and_then(|v| v.parse().ok()),
            target_sdk: find(&["targetSdk", "targetSdkVersion"]).and_then(|v| v.parse().ok()),
        }
    }
}

/// The text between the braces of the first `defaultConfig {`, if any.
fn default_config_block(text: &str) -> Option<&str> {
    let start = text.find("defaultConfig")?;
    let open = start + text[start..].find('{')?;
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The raw value of the first line `key value`, `key = value` or `key(value)`.
fn find_value<'a>(text: &'a str, keys: &[&str]) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let line = line.trim();
        keys.iter().find_map(|key| {
            let rest = line.strip_prefix(key)?;
            // `minSdk` must not match `minSdkPreview`; the key must end at a separator.
            if !rest.starts_with([' ', '\t', '=', '(']) {
                return None;
            }
            let rest = rest.trim_start();
            let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
            let value = match rest.strip_prefix('(') {
                Some(inner) => inner.split(')').next()?,
                None => strip_comment(rest),
            };
            let value = value.trim();
            (!value.is_empty()).then_some(value)
        })
    })
}

fn strip_comment(value: &str) -> &str {
    match value.find("//") {
        // `//` inside a quoted string (an URL) is not a comment.
        Some(i) if value[..i].matches(['"', '\'']).count().is_multiple_of(2) => &value[..i],
        _ => value,
    }
}

/// The contents of `"..."` or `'...'` (no interpolation: `"$x"` is not a literal).
fn string_literal(value: &str) -> Option<String> {
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = value[1..].strip_suffix(quote)?;
    (!inner.contains('$') && !inner.contains(quote)).then(|| inner.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apk_that_is_not_a_regular_file_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("app-debug.apk");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let err = size_and_hash(&fifo).expect_err("a FIFO is no APK");
        assert!(format!("{err:#}").contains("FIFO"), "{err:#}");
        assert!(size_and_hash(Path::new("/dev/zero")).is_err());
    }

    #[test]
    fn groovy_values_are_read() {
        let text = "android {\n    namespace 'com.example.demo'\n    defaultConfig {\n        applicationId \"com.example.demo\"\n        minSdkVersion 24\n        targetSdk 34 // latest\n        versionCode 7\n        versionName '1.2.3'\n    }\n    productFlavors { free { applicationId 'com.example.free' } }\n}\n";
        assert_eq!(
            GradleValues::parse(text),
            GradleValues {
                application_id: Some("com.example.demo".into()),
                version_code: Some(7),
                version_name: Some("1.2.3".into()),
                min_sdk: Some(24),
                target_sdk: Some(34),
            }
        );
    }

    #[test]
    fn kts_values_are_read() {
        let text = "android {\n    compileSdk = 34\n    defaultConfig {\n        applicationId = \"com.x.app\"\n        minSdk = 26\n        targetSdkVersion(33)\n        versionCode = 12\n        versionName = \"2.0\"\n    }\n}\n";
        let values = GradleValues::parse(text);
        assert_eq!(values.application_id.as_deref(), Some("com.x.app"));
        assert_eq!(values.min_sdk, Some(26));
        assert_eq!(values.target_sdk, Some(33));
        assert_eq!(values.version_code, Some(12));
        assert_eq!(values.version_name.as_deref(), Some("2.0"));
    }

    #[test]
    fn missing_or_computed_values_are_none() {
        let text = "android {\n    defaultConfig {\n        minSdk libs.versions.minSdk.get().toInteger()\n        versionName \"${major}.0\"\n        versionCode = rootProject.ext.code\n        minSdkPreview 'U'\n    }\n}\n";
        assert_eq!(GradleValues::parse(text), GradleValues::default());
        assert_eq!(GradleValues::parse(""), GradleValues::default());
    }

    #[test]
    fn hash_is_streamed_sha256() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.apk");
        std::fs::write(&path, b"abc").expect("write");
        let (size, hash) = size_and_hash(&path).expect("hash");
        assert_eq!(size, 3);
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn newest_apk_is_found_recursively() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(newest_apk(dir.path()), None);
        let old = dir.path().join("debug/old.apk");
        std::fs::create_dir_all(old.parent().expect("parent")).expect("mkdir");
        std::fs::write(&old, b"1").expect("write");
        let new = dir.path().join("release/deep/new.apk");
        std::fs::create_dir_all(new.parent().expect("parent")).expect("mkdir");
        std::fs::write(&new, b"2").expect("write");
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(past))
            .expect("set mtime");
        assert_eq!(newest_apk(dir.path()), Some(new));
    }
}
