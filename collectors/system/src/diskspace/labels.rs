//! Filesystem labels, from udev's `/dev/disk/by-label` symlinks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::select::path_from_bytes;

/// Where udev keeps one symlink per filesystem label.
pub(super) const LABELS_DIR: &str = "/dev/disk/by-label";

/// Decodes udev's `\xHH` escapes in a `/dev/disk/by-label` entry name
/// (`my\x20disk` → `my disk`).
fn decode_udev(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let [b'\\', b'x', h, l, ..] = bytes[i..] {
            if let (Some(h), Some(l)) = ((h as char).to_digit(16), (l as char).to_digit(16)) {
                out.push((h * 16 + l) as u8);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Filesystem labels by device, from udev's `/dev/disk/by-label` symlinks.
#[derive(Debug, Default)]
pub(super) struct Labels {
    by_device: HashMap<PathBuf, String>,
}

impl Labels {
    /// Reads `dir`. A missing or unreadable directory, or a dangling link,
    /// gives no label (Diamond ignores them too).
    pub(super) fn read(dir: &Path) -> Labels {
        let mut by_device = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if let Ok(device) = std::fs::canonicalize(entry.path()) {
                    let label = decode_udev(&entry.file_name().to_string_lossy());
                    by_device.insert(device, label);
                }
            }
        }
        Labels { by_device }
    }

    /// The label of the filesystem on `device` (a `/proc/mounts` source),
    /// following symlinks such as `/dev/mapper/vg-root` or
    /// `/dev/disk/by-uuid/…`. Only local paths are resolved: not network
    /// sources, nor `//host/share`.
    pub(super) fn of(&self, device: &[u8]) -> Option<String> {
        if self.by_device.is_empty() || device.first() != Some(&b'/') || device.starts_with(b"//") {
            return None;
        }
        let path = path_from_bytes(device);
        if let Some(label) = self.by_device.get(&path) {
            return Some(label.clone());
        }
        let real = std::fs::canonicalize(&path).ok()?;
        self.by_device.get(&real).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diskspace::mounts::parse_mounts;
    use crate::diskspace::select::select_mounts;
    use crate::diskspace::testing::default_filter;
    use crate::test_support::ProcDir;

    #[cfg(unix)]
    #[test]
    fn labels_name_filesystems_like_diamond() {
        let dir = ProcDir::new("diskspace-labels");
        let devs = dir.path.join("dev");
        let by_label = devs.join("disk/by-label");
        std::fs::create_dir_all(&by_label).unwrap();
        std::fs::create_dir_all(devs.join("mapper")).unwrap();
        std::fs::write(devs.join("sda1"), "").unwrap();
        std::fs::write(devs.join("dm-0"), "").unwrap();
        std::os::unix::fs::symlink("../../sda1", by_label.join("cloudimg-rootfs")).unwrap();
        std::os::unix::fs::symlink("../../dm-0", by_label.join("my\\x20data")).unwrap();
        std::os::unix::fs::symlink("../dm-0", devs.join("mapper/vg-data")).unwrap();
        std::os::unix::fs::symlink("../../nowhere", by_label.join("dangling")).unwrap();
        let labels = Labels::read(&by_label);
        assert_eq!(labels.by_device.len(), 2, "{labels:?}");

        let d = devs.display();
        let text = format!(
            "{d}/sda1 / ext4 rw 0 0\n{d}/mapper/vg-data /srv xfs rw 0 0\n{d}/sdb1 /var ext4 rw 0 0\nnas:/x /n nfs rw 0 0\n"
        );
        let mut lines = Vec::new();
        parse_mounts(Path::new("m"), text.as_bytes(), &mut lines).unwrap();
        let mut mounts = Vec::new();
        let mut problems = Vec::new();
        select_mounts(
            &lines,
            &default_filter(),
            &|dev| labels.of(dev),
            &mut mounts,
            &mut problems,
        );
        let names: Vec<_> = mounts.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["cloudimg-rootfs", "my_data", "_var", "_n"]);

        assert!(Labels::read(&dir.path.join("missing")).by_device.is_empty());
        assert_eq!(decode_udev("a\\x2fb\\x20c\\xzz"), "a/b c\\xzz");
    }
}
