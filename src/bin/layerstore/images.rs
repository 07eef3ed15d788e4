//! Image commands: import, ls, inspect, tag, rm, export.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use layerstore::{ExportFormat, Store};

use crate::output::{human, outln, print_json};

#[derive(Subcommand)]
pub(crate) enum ImageCommand {
    /// Import an OCI image layout (directory or tar) or a `docker save` archive.
    Import {
        /// Layout directory, layout tar, or docker archive.
        path: PathBuf,
        /// Name for the image (overrides the names in the archive; single image only).
        #[arg(long)]
        name: Option<String>,
        /// Move names that already point at another image (the old image
        /// stays until gc).
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List images.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an image's manifests, config and layers.
    Inspect {
        /// Image name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give an image another name.
    Tag {
        /// Existing name.
        src: String,
        /// New name.
        dst: String,
        /// Move DST if it names another image (the old image stays until gc).
        #[arg(long)]
        force: bool,
    },
    /// Remove an image name (layers only it used go too, unless put directly).
    Rm {
        /// Image names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Export images as an OCI layout directory or a docker archive.
    Export {
        /// Image names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "oci")]
        format: FormatArg,
        /// Output path (must not exist).
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum FormatArg {
    /// OCI image layout directory.
    Oci,
    /// `docker save` tar archive.
    DockerArchive,
}

pub(crate) fn image(store: &Store, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Import {
            path,
            name,
            force,
            json,
        } => {
            let report = store
                .import_image_with(&path, name.as_deref(), force)
                .with_context(|| format!("importing {}", path.display()))?;
            for moved in &report.moved {
                eprintln!(
                    "layerstore: {} pointed at {}; moved (that image stays until gc)",
                    moved.name, moved.previous
                );
            }
            if json {
                return print_json(&report);
            }
            for image in &report.images {
                outln!("{}\t{}", image.name, image.digest);
            }
            eprintln!(
                "imported {} image(s) from {} ({}): {} layer blob(s), {} new layer(s), store grew by {}",
                report.images.len(),
                path.display(),
                report.format,
                report.layers,
                report.new_layers,
                human(report.added_bytes)
            );
            Ok(())
        }
        ImageCommand::Ls { json } => {
            let images = store.images()?;
            if json {
                return print_json(&images);
            }
            outln!(
                "{:<40}  {:<71}  {:>6}  {:>10}  PLATFORMS",
                "NAME",
                "DIGEST",
                "LAYERS",
                "SIZE"
            );
            for i in images {
                outln!(
                    "{:<40}  {:<71}  {:>6}  {:>10}  {}",
                    i.name,
                    i.digest.to_string(),
                    i.layers,
                    human(i.size),
                    i.platforms.join(",")
                );
            }
            Ok(())
        }
        ImageCommand::Inspect { name, json } => {
            let d = store.image(&name)?;
            if json {
                return print_json(&d);
            }
            outln!("name        {}", d.name);
            outln!("digest      {}", d.digest);
            outln!("media type  {}", d.media_type);
            for m in &d.manifests {
                outln!();
                outln!("manifest    {}", m.digest);
                if let Some(p) = &m.platform {
                    outln!("platform    {p}");
                }
                outln!("config      {}", m.config);
                for (i, l) in m.layers.iter().enumerate() {
                    outln!(
                        "layer {i:<3}   {}  {:>10}  shared with {} other image(s)",
                        l.diff_id,
                        human(l.size),
                        l.shared_with
                    );
                    outln!(
                        "            blob {} {} ({})",
                        l.blob_digest,
                        human(l.blob_size),
                        l.media_type
                    );
                }
            }
            Ok(())
        }
        ImageCommand::Tag { src, dst, force } => {
            let previous = store
                .tag_image_with(&src, &dst, force)
                .with_context(|| format!("tagging {src} as {dst}"))?;
            if let Some(previous) = previous {
                eprintln!(
                    "layerstore: {dst} pointed at {previous}; moved (that image stays until gc)"
                );
            }
            Ok(())
        }
        ImageCommand::Rm { names } => {
            // All or nothing: a name that does not exist removes none.
            store.remove_images(&names).context("removing images")?;
            for name in names {
                outln!("{name}");
            }
            Ok(())
        }
        ImageCommand::Export {
            names,
            format,
            output,
            json,
        } => {
            let format = match format {
                FormatArg::Oci => ExportFormat::Oci,
                FormatArg::DockerArchive => ExportFormat::DockerArchive,
            };
            let to_stdout = output.as_os_str() == "-";
            let report = if to_stdout {
                // `-o -`: the archive on standard output (never a file named -).
                if format != ExportFormat::DockerArchive {
                    bail!(
                        "an OCI layout is a directory and cannot go to standard output; \
                         use --format docker-archive with -o -"
                    );
                }
                if json {
                    bail!("--json cannot share standard output with the archive written there");
                }
                let stdout = std::io::stdout();
                if stdout.is_terminal() {
                    bail!(
                        "refusing to write a tar archive to a terminal; redirect it or use -o FILE"
                    );
                }
                let mut lock = stdout.lock();
                store
                    .export_docker_archive_to(&names, &mut lock)
                    .context("exporting to standard output")?
            } else {
                store
                    .export_images(&names, format, &output)
                    .with_context(|| format!("exporting to {}", output.display()))?
            };
            for image in &report.images {
                if image.digest_changed {
                    eprintln!(
                        "layerstore: {}: manifest digest changed from {} to {}: {}",
                        image.name,
                        image.stored_digest,
                        image.exported_digest,
                        image.note.as_deref().unwrap_or("rewritten")
                    );
                } else if let Some(note) = &image.note {
                    eprintln!("layerstore: {}: {note}", image.name);
                }
            }
            if json {
                return print_json(&report);
            }
            for image in &report.images {
                if to_stdout {
                    eprintln!("{}\t{}", image.name, image.exported_digest);
                    continue;
                }
                outln!("{}\t{}", image.name, image.exported_digest);
            }
            Ok(())
        }
    }
}
