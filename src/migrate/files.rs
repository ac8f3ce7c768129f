//! Diamond's merged files: `[configs]`, `collectors_config_path` and
//! `handlers_config_path` read into the one configuration.

use std::path::{Path, PathBuf};

use super::configobj::{Entry, Origin, ParseError, Section};
use super::values::single;
use super::{configobj, Translator};

impl Translator<'_> {
    /// Diamond's `[configs]`: every `*<extension>` file of `path` merged
    /// into the configuration, in name order.
    pub(super) fn merge_configs(&mut self, root: &mut Section) -> Result<(), ParseError> {
        let Some(configs) = root.section("configs").cloned() else {
            return Ok(());
        };
        let Some(path) = configs.get("path") else {
            return Ok(());
        };
        let extension = configs
            .get("extension")
            .map(single)
            .unwrap_or_else(|| ".conf".into());
        let dir = self.resolve(&single(path));
        let Some(files) = self.files_in(&dir, path, "[configs]") else {
            return Ok(());
        };
        for file in files {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.ends_with(extension.as_str())) {
                root.merge(&configobj::read(&file)?);
            }
        }
        Ok(())
    }

    /// The regular files of `dir`, sorted; `None` (with a note) when it
    /// cannot be read, as Diamond skips a directory that does not exist.
    pub(super) fn files_in(
        &mut self,
        dir: &Path,
        entry: &Entry,
        section: &str,
    ) -> Option<Vec<PathBuf>> {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                Some(files)
            }
            Err(e) => {
                self.skip(
                    section,
                    entry,
                    format!(
                        "cannot read the directory {} ({e}): its files were not read, so \
                         what they configure is missing here; run migrate-diamond where they \
                         are, or copy them next to the configuration and use a relative path",
                        dir.display()
                    ),
                );
                None
            }
        }
    }

    /// Diamond's `collectors_config_path` and `handlers_config_path`: each
    /// file `<Name>.<ext>` merged into `[<into>][[<Name>]]`.
    pub(super) fn merge_dir(
        &mut self,
        root: &mut Section,
        server: &Section,
        key: &str,
        into: &str,
    ) -> Result<(), ParseError> {
        let Some(entry) = server.get(key) else {
            return Ok(());
        };
        let dir = self.resolve(&single(entry));
        let Some(files) = self.files_in(&dir, entry, "[server]") else {
            return Ok(());
        };
        for file in files {
            let Some(name) = file.file_stem().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let parsed = configobj::read(&file)?;
            let origin = Origin {
                file: parsed.origin.file.clone(),
                line: 1,
            };
            root.section_mut(into, &origin)
                .section_mut(&name, &origin)
                .merge(&parsed);
        }
        Ok(())
    }
}
