//! Choosing the mounts to measure (by type and exclude regexes, the first
//! mount of a device) and naming them as Diamond did.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use carat_collector::name;
use carat_collector::options::Patterns;

use super::mounts::{shown, MountLine};

/// Which mounts to measure.
#[derive(Debug)]
pub(super) struct MountFilter {
    pub(super) filesystems: Vec<String>,
    pub(super) exclude: Patterns,
}

/// A mount to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mount {
    /// The mount point, exactly as the kernel gave it (not always UTF-8).
    pub(super) path: PathBuf,
    /// The mount point for messages (lossy, control characters escaped).
    pub(super) shown: String,
    /// Its metric path component, sanitised.
    pub(super) name: String,
    /// A network filesystem (its source is `host:/path` or `//host/share`):
    /// measured after the local ones, which are unlikely to hang.
    pub(super) remote: bool,
}

/// Diamond's name for a mount point: `/` and `.` become `_`, `\` is removed;
/// `/` is `root` and `/tmp` is `tmp`.
fn diamond_name(mount_point: &str) -> String {
    let name: String = mount_point
        .chars()
        .filter(|&c| c != '\\')
        .map(|c| if c == '/' || c == '.' { '_' } else { c })
        .collect();
    match name.as_str() {
        "_" => "root".to_owned(),
        "_tmp" => "tmp".to_owned(),
        _ => name,
    }
}

/// True for a mount point that can be measured: an absolute path, or a
/// Windows drive (`C:\`) as `sysinfo` lists it.
fn is_mount_point(path: &[u8]) -> bool {
    match path {
        [b'/', ..] => true,
        [drive, b':', b'\\' | b'/', ..] => drive.is_ascii_alphabetic(),
        _ => false,
    }
}

/// True for sources that name a device, a network export or a share, whose
/// second mount is the same filesystem again. `tmpfs`, `overlay`, `none`
/// and the like are a new filesystem at each mount.
fn names_a_device(device: &[u8]) -> bool {
    device.first() == Some(&b'/') || device.contains(&b':')
}

fn is_remote(device: &[u8]) -> bool {
    device.starts_with(b"//") || (device.first() != Some(&b'/') && device.contains(&b':'))
}

#[cfg(unix)]
pub(super) fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
pub(super) fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// Chooses the mounts to measure from `lines`, in order, into `out`:
/// filtered by type and exclude regexes, de-duplicated by device (the first
/// mount wins), and named by `label_of(device)` or else Diamond's name of
/// the mount point. A mount whose name was already taken is left out and
/// described in `problems`.
pub(super) fn select_mounts(
    lines: &[MountLine<'_>],
    filter: &MountFilter,
    label_of: &dyn Fn(&[u8]) -> Option<String>,
    out: &mut Vec<Mount>,
    problems: &mut Vec<String>,
) {
    out.clear();
    let mut devices: HashSet<&[u8]> = HashSet::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for line in lines {
        let fs_type = &*line.fs_type;
        if !filter.filesystems.iter().any(|t| t.as_bytes() == fs_type) {
            continue;
        }
        let mount_point = &*line.mount_point;
        if !is_mount_point(mount_point) {
            continue;
        }
        let text = String::from_utf8_lossy(mount_point);
        if filter.exclude.is_match(&text) {
            continue;
        }
        let device = &*line.device;
        if names_a_device(device) && !devices.insert(device) {
            continue;
        }
        let raw_name = label_of(device).unwrap_or_else(|| diamond_name(&text));
        let name = name::component(&raw_name);
        let shown = shown(mount_point, 200);
        if let Some(&first) = names.get(&name) {
            problems.push(format!(
                "{shown}: not measured: its metric name {name:?} is already used by {} \
                 (exclude one of them with exclude_filters)",
                out[first].shown
            ));
            continue;
        }
        names.insert(name.clone(), out.len());
        out.push(Mount {
            path: path_from_bytes(mount_point),
            shown,
            name,
            remote: is_remote(device),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diskspace::mounts::parse_mounts;
    use crate::diskspace::testing::{chosen, default_filter, fixture, pairs};
    use crate::diskspace::DEFAULT_FILESYSTEMS;
    use crate::test_support::regexes;
    use std::path::Path;

    #[test]
    fn recorded_sandbox_mounts() {
        let text = fixture("mounts-sandbox");
        let mut lines = Vec::new();
        parse_mounts(Path::new("mounts-sandbox"), &text, &mut lines).unwrap();
        assert_eq!(lines.len(), text.iter().filter(|&&b| b == b'\n').count());
        let root = lines.iter().find(|l| &*l.mount_point == b"/").unwrap();
        assert_eq!(
            (&*root.device, &*root.fs_type),
            (&b"/dev/vda"[..], &b"ext4"[..])
        );
        // Only the root filesystem is of a type in Diamond's default list.
        let (chosen, problems) = chosen(&text, &default_filter());
        assert_eq!(chosen, pairs(&[("/", "root")]));
        assert!(problems.is_empty());
    }

    #[test]
    fn edge_cases_with_default_options() {
        let (chosen, problems) = chosen(&fixture("mounts-edge"), &default_filter());
        assert_eq!(
            chosen,
            pairs(&[
                ("/", "root"),
                // /srv/bind: the same device as /var/lib, left out.
                ("/var/lib", "_var_lib"),
                ("/mnt/my disk", "_mnt_my_disk"),
                // /export/home and /export/home/alice: excluded.
                // The default filter is anchored at the start.
                ("/srv/export/home", "_srv_export_home"),
                ("/data.old", "_data_old"),
                // /mnt/media-again: the same NFS export, left out.
                ("/mnt/media", "_mnt_media"),
                ("/mnt/backup", "_mnt_backup"),
                ("/mnt/back\\slash\\ttab", "_mnt_backslash_tab"),
                // /home/.snapshots: another subvolume of the same device.
                ("/home", "_home"),
                ("/mnt/caf\u{fffd}", "_mnt_caf_"),
            ])
        );
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn tmpfs_and_no_exclude_filters() {
        let filter = MountFilter {
            filesystems: vec!["tmpfs".into(), "xfs".into(), "vfat".into()],
            exclude: Patterns::default(),
        };
        let (chosen, _) = chosen(&fixture("mounts-edge"), &filter);
        assert_eq!(
            chosen,
            pairs(&[
                // tmpfs sources name no device: each mount is its own.
                ("/run", "_run"),
                ("/boot/efi", "_boot_efi"),
                ("/tmp", "tmp"),
                ("/mnt/my disk", "_mnt_my_disk"),
                ("/export/home", "_export_home"),
                ("/export/home/alice", "_export_home_alice"),
            ])
        );
    }

    #[test]
    fn exclude_filters_search_anywhere() {
        let filter = MountFilter {
            filesystems: DEFAULT_FILESYSTEMS.iter().map(|s| (*s).into()).collect(),
            exclude: regexes(&["^/mnt", "home"]),
        };
        let (chosen, _) = chosen(&fixture("mounts-edge"), &filter);
        let names: Vec<_> = chosen.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["root", "_var_lib", "_data_old"]);
    }

    #[test]
    fn names_follow_diamond_and_stay_one_component() {
        assert_eq!(diamond_name("/"), "root");
        assert_eq!(diamond_name("/tmp"), "tmp");
        assert_eq!(diamond_name("/tmp/x"), "_tmp_x");
        assert_eq!(diamond_name("/var/lib"), "_var_lib");
        assert_eq!(diamond_name("/a.b/c\\d"), "_a_b_cd");
        // Whatever a mount point holds, the name is one safe component.
        let text = b"/dev/sda1 /x\\012servers.evil\\040-1\\011y ext4 rw 0 0\n";
        let (chosen, _) = chosen(text, &default_filter());
        assert_eq!(chosen[0].1, "_x_servers_evil_-1_y");
        assert_eq!(chosen[0].0, "/x\\nservers.evil -1\\ty");
    }

    #[test]
    fn name_clashes_keep_the_first_and_say_so() {
        let text = b"/dev/sda1 /a.b ext4 rw 0 0\n/dev/sdb1 /a/b ext4 rw 0 0\n/dev/sdc1 /a\\040b ext4 rw 0 0\n";
        let (chosen, problems) = chosen(text, &default_filter());
        assert_eq!(chosen, pairs(&[("/a.b", "_a_b")]));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "/a/b: not measured: its metric name \"_a_b\" is already used by /a.b"
            ),
            "{problems:?}"
        );
    }
}
