//! The runner's flags: `--smoke`, `--rounds N`, `--out PATH`, `--only TEXT`,
//! `--hubcat PATH`.

use std::path::{Path, PathBuf};

pub(crate) struct Options {
    pub(crate) smoke: bool,
    pub(crate) rounds: usize,
    pub(crate) out: PathBuf,
    pub(crate) only: Option<String>,
    pub(crate) hubcat: Option<PathBuf>,
}

pub(crate) fn parse_options(root: &Path) -> Result<Options, String> {
    let mut o = Options {
        smoke: false,
        rounds: 3,
        out: root.join("benches/RESULTS.md"),
        only: None,
        hubcat: None,
    };
    let mut out_set = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--smoke" => o.smoke = true,
            "--rounds" => {
                o.rounds = value()?
                    .parse()
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or("--rounds must be a positive number")?
            }
            "--out" => {
                o.out = PathBuf::from(value()?);
                out_set = true;
            }
            "--only" => o.only = Some(value()?),
            "--hubcat" => o.hubcat = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if o.smoke {
        if !out_set {
            o.out = root.join("target/compare-smoke.md");
        }
        o.rounds = o.rounds.min(1);
    }
    Ok(o)
}
