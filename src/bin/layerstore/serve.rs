//! `layerstore serve`.

use std::io::Write;

use anyhow::Result;
use layerstore::{ServeOptions, Store};

pub(crate) fn serve(store: &Store, opts: &ServeOptions) -> Result<()> {
    store.serve(opts, |addr| {
        // Scripts and tests read the address from this first line.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
        eprintln!(
            "layerstore: serving {} on http://{addr}",
            store.path().display()
        );
    })?;
    Ok(())
}
