//! Root filesystem and container commands: checkout, container create,
//! ls, path, mount, umount, diff, rm, commit.

use anyhow::{Context, Result};
use clap::Subcommand;
use layerstore::Store;

use crate::output::{escape_controls, human, outln, print_json, utc};

#[derive(Subcommand)]
pub(crate) enum ContainerCommand {
    /// Create a container: a directory with the image's root filesystem.
    Create {
        /// Image name.
        image: String,
        /// Container name (default: a random id).
        #[arg(long)]
        name: Option<String>,
        /// How it shares storage: overlay (an upper layer over shared layer
        /// snapshots; root), reflink (clones of one checkout), copy, or
        /// auto (the first of these that works here).
        #[arg(long, default_value = "auto", value_parser = ["auto", "overlay", "reflink", "copy"])]
        sharing: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List containers.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the directory of a container's root filesystem (an overlay
    /// container's root is mounted again if it is not mounted).
    Path {
        /// Container name.
        name: String,
    },
    /// Mount overlay containers' roots (after a reboot or `umount`).
    Mount {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Unmount overlay containers' roots; their changes stay.
    Umount {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List paths added (A), changed (C) and deleted (D) against the image.
    Diff {
        /// Container name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove containers (their images stay).
    Rm {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Store a container's changes as a new layer and image NEWIMAGE.
    Commit {
        /// Container name.
        name: String,
        /// Name of the new image.
        new_image: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn checkout(
    store: &Store,
    image: &str,
    dir: &std::path::Path,
    json: bool,
) -> Result<()> {
    let report = store
        .checkout(image, dir)
        .with_context(|| format!("checking out {image} into {}", dir.display()))?;
    for w in &report.warnings {
        eprintln!("layerstore: warning: {w}");
    }
    if json {
        return print_json(&report);
    }
    outln!("{}", report.path.display());
    eprintln!(
        "checked out {} ({}): {} layer(s), {} entries, {} whiteout(s){}{}",
        report.image,
        report.manifest,
        report.layers,
        report.entries,
        report.whiteouts,
        if report.from_snapshots {
            " (copied from the layer snapshots)"
        } else {
            ""
        },
        if report.owners_applied {
            ""
        } else {
            " (ownership not applied: not root)"
        }
    );
    Ok(())
}

pub(crate) fn container(store: &Store, cmd: ContainerCommand) -> Result<()> {
    match cmd {
        ContainerCommand::Create {
            image,
            name,
            sharing,
            json,
        } => {
            let sharing: layerstore::Sharing = sharing.parse()?;
            let c = store
                .create_container_with(&image, name.as_deref(), sharing)
                .with_context(|| format!("creating a container of {image}"))?;
            if json {
                return print_json(&c);
            }
            outln!("{}", c.name);
            eprintln!("root filesystem: {} ({})", c.path.display(), c.sharing);
            Ok(())
        }
        ContainerCommand::Ls { json } => {
            let list = store.containers()?;
            if json {
                return print_json(&list);
            }
            outln!(
                "{:<20}  {:<30}  {:<23}  {:<8}  {:<7}  PATH",
                "NAME",
                "IMAGE",
                "CREATED",
                "SHARING",
                "MOUNTED"
            );
            for c in list {
                outln!(
                    "{:<20}  {:<30}  {:<23}  {:<8}  {:<7}  {}",
                    c.name,
                    c.image,
                    utc(c.created),
                    c.sharing,
                    if c.mounted { "yes" } else { "no" },
                    c.path.display()
                );
            }
            Ok(())
        }
        ContainerCommand::Path { name } => {
            let path = store
                .mount_container(&name)
                .with_context(|| format!("mounting container {name}"))?;
            outln!("{}", path.display());
            Ok(())
        }
        ContainerCommand::Mount { names } => {
            for name in names {
                let path = store
                    .mount_container(&name)
                    .with_context(|| format!("mounting container {name}"))?;
                outln!("{}", path.display());
            }
            Ok(())
        }
        ContainerCommand::Umount { names } => {
            for name in names {
                store
                    .unmount_container(&name)
                    .with_context(|| format!("unmounting container {name}"))?;
                outln!("{name}");
            }
            Ok(())
        }
        ContainerCommand::Diff { name, json } => {
            let changes = store
                .container_diff(&name)
                .with_context(|| format!("diff of container {name}"))?;
            if json {
                return print_json(&changes);
            }
            for c in changes {
                let letter = match c.kind {
                    layerstore::ChangeKind::Added => 'A',
                    layerstore::ChangeKind::Changed => 'C',
                    layerstore::ChangeKind::Deleted => 'D',
                };
                outln!("{letter} {}", escape_controls(&c.path));
            }
            Ok(())
        }
        ContainerCommand::Rm { names } => {
            for name in &names {
                store.container(name)?;
            }
            for name in names {
                store
                    .remove_container(&name)
                    .with_context(|| format!("removing container {name}"))?;
                outln!("{name}");
            }
            Ok(())
        }
        ContainerCommand::Commit {
            name,
            new_image,
            json,
        } => {
            let report = store
                .commit_container(&name, &new_image)
                .with_context(|| format!("committing container {name} as {new_image}"))?;
            if json {
                return print_json(&report);
            }
            outln!("{}\t{}", report.image, report.manifest);
            eprintln!(
                "new layer {} ({}): {} added, {} changed, {} deleted; store grew by {}",
                report.layer,
                human(report.layer_size),
                report.added,
                report.changed,
                report.deleted,
                human(report.added_bytes)
            );
            Ok(())
        }
    }
}
