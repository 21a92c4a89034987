//! Where a node's configuration comes from: flags, `SLUICE_*` environment
//! variables, an optional TOML file (`--config FILE`) and the defaults, in
//! that order of precedence; and `sluice config show`, which prints the
//! effective configuration with the source of every value.
//!
//! The file's keys are the flags' names (`data-dir = "/data"`; `data_dir` is
//! read the same). Its values are handed to clap as the flags they name, so a
//! file value is checked by the same parser as the flag. A key that names no
//! flag is an error, so a misspelt setting never passes unnoticed.
//!
//! Owns no state and starts no work; `cli` calls it before `node::run`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};

use crate::config::NodeConfig;

/// The flags of `sluice serve` and `sluice config show`: the node's flags and
/// the file that supplies the flags not given otherwise.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// A TOML file of node flags, keyed by flag name (`http-addr =
    /// "0.0.0.0:8080"`); a flag or a `SLUICE_*` variable overrides its value.
    /// (Kafka: the `server.properties` file.)
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub node: NodeConfig,
}

/// Why the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigFileError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: unknown key `{key}` (keys are the flags of `sluice serve`, e.g. `data-dir`)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: key `{key}` {problem}")]
    BadValue {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("config file {path}: {message}")]
    Rejected { path: PathBuf, message: String },
    /// The flags themselves are wrong (clap formats the message).
    #[error("{0}")]
    Flags(#[from] clap::Error),
}

/// Where one setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Flag,
    Env(String),
    File(PathBuf),
    Default,
    /// No value (an optional setting left out).
    Unset,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => write!(f, "flag"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Default => write!(f, "default"),
            Source::Unset => write!(f, "unset"),
        }
    }
}

/// One setting of the effective configuration.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    /// The flag's name without dashes (`data-dir`), also the file's key.
    pub name: String,
    /// Its values as the flag would take them (several for a list).
    pub values: Vec<String>,
    /// Whether the flag is a list (`--cors-origins`), shown as a TOML array.
    pub list: bool,
    pub source: Source,
}

/// The node's configuration and where each value came from.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub node: NodeConfig,
    pub file: Option<PathBuf>,
    pub settings: Vec<Setting>,
}

/// Flags of `serve` that are not settings, so no key of the file.
const NOT_KEYS: &[&str] = &["config", "help"];

/// The `serve` command as clap sees it (arguments without the program name).
fn serve_command() -> clap::Command {
    ServeArgs::augment_args(clap::Command::new("serve").no_binary_name(true))
}

/// Assemble the configuration from `args` (the flags after `serve` or
/// `config show`), the environment and the file named by `--config` or
/// `SLUICE_CONFIG`.
pub(crate) fn resolve(args: &[OsString]) -> Result<Resolved, ConfigFileError> {
    let command = serve_command();
    let given = command.clone().try_get_matches_from(args)?;
    let file = given.get_one::<PathBuf>("config").cloned();
    let mut file_keys: Vec<String> = Vec::new();
    let mut all_args: Vec<OsString> = args.to_vec();
    if let Some(path) = &file {
        let table = read_table(path)?;
        for (key, value) in &table {
            let name = key.replace('_', "-");
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(name.as_str()) && !NOT_KEYS.contains(&name.as_str()))
                .ok_or_else(|| ConfigFileError::UnknownKey {
                    path: path.clone(),
                    key: key.clone(),
                })?;
            if file_keys.contains(&name) {
                return Err(bad_value(path, key, "is given twice (as - and _)"));
            }
            file_keys.push(name.clone());
            if matches!(
                given.value_source(arg.get_id().as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                continue;
            }
            all_args.extend(file_flag(path, key, arg, value)?);
        }
    }
    let matches = command
        .clone()
        .try_get_matches_from(&all_args)
        .map_err(|e| match &file {
            Some(path) => ConfigFileError::Rejected {
                path: path.clone(),
                message: e.to_string().trim().to_string(),
            },
            None => ConfigFileError::Flags(e),
        })?;
    let node = ServeArgs::from_arg_matches(&matches)?.node;
    let settings = command
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_long()?;
            if NOT_KEYS.contains(&name) {
                return None;
            }
            let id = arg.get_id().as_str();
            let values = raw_values(&matches, id);
            let source = match given.value_source(id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Env(
                    arg.get_env()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ if file_keys.iter().any(|k| k == name) => {
                    Source::File(file.clone().unwrap_or_default())
                }
                _ if values.is_empty() => Source::Unset,
                _ => Source::Default,
            };
            Some(Setting {
                name: name.to_string(),
                values,
                list: arg.get_value_delimiter().is_some(),
                source,
            })
        })
        .collect();
    Ok(Resolved {
        node,
        file,
        settings,
    })
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigFileError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })
}

fn bad_value(path: &Path, key: &str, problem: &str) -> ConfigFileError {
    ConfigFileError::BadValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        problem: problem.to_string(),
    }
}

/// The command-line arguments that give `arg` the file's `value`.
fn file_flag(
    path: &Path,
    key: &str,
    arg: &clap::Arg,
    value: &toml::Value,
) -> Result<Vec<OsString>, ConfigFileError> {
    let long = arg.get_long().unwrap_or_default();
    if !arg.get_action().takes_values() {
        // A switch (`--http-auth`): true gives it, false leaves it out.
        return match value {
            toml::Value::Boolean(true) => Ok(vec![format!("--{long}").into()]),
            toml::Value::Boolean(false) => Ok(Vec::new()),
            _ => Err(bad_value(path, key, "must be true or false")),
        };
    }
    let text = match (value, arg.get_value_delimiter()) {
        (toml::Value::Array(items), Some(delimiter)) => {
            let items = items
                .iter()
                .map(|item| {
                    scalar(item).ok_or_else(|| bad_value(path, key, "must list plain values"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            items.join(&delimiter.to_string())
        }
        (toml::Value::Array(_), None) => {
            return Err(bad_value(path, key, "takes one value, not a list"))
        }
        (value, _) => scalar(value)
            .ok_or_else(|| bad_value(path, key, "must be a string, number or boolean"))?,
    };
    Ok(vec![format!("--{long}={text}").into()])
}

/// A TOML scalar as the text a flag would take.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

fn raw_values(matches: &ArgMatches, id: &str) -> Vec<String> {
    matches
        .get_raw(id)
        .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// The effective configuration as a TOML file a node could be started with,
/// each value followed by its source (`sluice config show`).
pub(crate) fn render(resolved: &Resolved) -> String {
    let mut out = String::new();
    match &resolved.file {
        Some(path) => {
            let _ = writeln!(out, "# config file: {}", path.display());
        }
        None => out.push_str("# config file: none\n"),
    }
    out.push_str("# precedence: flag > env > file > default\n");
    for setting in &resolved.settings {
        if setting.source == Source::Unset {
            let _ = writeln!(out, "# {} is not set", setting.name);
            continue;
        }
        let value = if setting.list {
            toml::Value::Array(setting.values.iter().map(|v| toml_scalar(v)).collect())
        } else {
            toml_scalar(&setting.values.join(","))
        };
        let _ = writeln!(out, "{} = {}  # {}", setting.name, value, setting.source);
    }
    out
}

/// A value shown as a TOML number or boolean when it reads as one, else a string.
fn toml_scalar(text: &str) -> toml::Value {
    if let Ok(i) = text.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = text.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(text.to_string())
    }
}

/// `sluice config show`: print the effective configuration.
pub(crate) fn show(args: &[OsString]) -> Result<(), ConfigFileError> {
    let resolved = resolve(args)?;
    print!("{}", render(&resolved));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Tests that set `SLUICE_*` variables run one at a time.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn write_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("sluice.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sluice-config-file-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn setting<'a>(resolved: &'a Resolved, name: &str) -> &'a Setting {
        resolved.settings.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let _guard = ENV_LOCK.lock().unwrap();
        let dir = temp_dir("precedence");
        let file = write_file(
            &dir,
            "num-partitions = 5\nshop_partitions = 6\nnode-id = 7\nhttp-auth = true\ncors-origins = [\"https://a.example\", \"https://b.example\"]\n",
        );
        std::env::set_var("SLUICE_NUM_PARTITIONS", "8");
        std::env::set_var("SLUICE_NODE_ID", "9");
        let outcome = resolve(&args(&[
            "--config",
            file.to_str().unwrap(),
            "--node-id",
            "10",
        ]));
        std::env::remove_var("SLUICE_NUM_PARTITIONS");
        std::env::remove_var("SLUICE_NODE_ID");
        let resolved = outcome.unwrap();
        // flag > env > file
        assert_eq!(resolved.node.node_id, 10);
        assert_eq!(setting(&resolved, "node-id").source, Source::Flag);
        // env > file
        assert_eq!(resolved.node.num_partitions, 8);
        assert_eq!(
            setting(&resolved, "num-partitions").source,
            Source::Env("SLUICE_NUM_PARTITIONS".into())
        );
        // file > default (the key with `_` reads as the flag's name)
        assert_eq!(resolved.node.shop_partitions, 6);
        assert_eq!(
            setting(&resolved, "shop-partitions").source,
            Source::File(file.clone())
        );
        assert!(resolved.node.http_auth);
        assert_eq!(
            resolved.node.cors_origins,
            vec![
                "https://a.example".to_string(),
                "https://b.example".to_string()
            ]
        );
        // default
        assert_eq!(resolved.node.max_frame_bytes, 100 * 1024 * 1024);
        assert_eq!(
            setting(&resolved, "max-frame-bytes").source,
            Source::Default
        );
        assert_eq!(setting(&resolved, "peers").source, Source::Unset);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `--config FILE` with a file holding `text`.
    fn resolve_text(dir: &Path, text: &str) -> Result<Resolved, ConfigFileError> {
        let file = write_file(dir, text);
        resolve(&args(&["--config", file.to_str().unwrap()]))
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let _guard = ENV_LOCK.lock().unwrap();
        let dir = temp_dir("unknown");
        let err =
            resolve_text(&dir, "http-addr = \"127.0.0.1:0\"\nhttp-adr = \"x\"\n").unwrap_err();
        assert!(matches!(&err, ConfigFileError::UnknownKey { key, .. } if key == "http-adr"));
        assert!(err.to_string().contains("unknown key `http-adr`"), "{err}");
        for not_a_setting in ["config = \"other.toml\"\n", "help = true\n"] {
            let err = resolve_text(&dir, not_a_setting).unwrap_err();
            assert!(matches!(err, ConfigFileError::UnknownKey { .. }), "{err}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_file_values_name_the_file() {
        let _guard = ENV_LOCK.lock().unwrap();
        let dir = temp_dir("bad");
        for (text, expected) in [
            ("num-partitions = \"many\"\n", "Rejected"),
            ("http-auth = \"yes\"\n", "BadValue"),
            ("kafka-addr = [\"a\", \"b\"]\n", "BadValue"),
            ("data-dir = \"a\"\ndata_dir = \"b\"\n", "BadValue"),
            ("num-partitions = \n", "Syntax"),
        ] {
            let err = resolve_text(&dir, text).unwrap_err();
            assert!(format!("{err:?}").starts_with(expected), "{text}: {err:?}");
            assert!(err.to_string().contains("sluice.toml"), "{err}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn shown_configuration_reads_back_as_the_same_file() {
        let _guard = ENV_LOCK.lock().unwrap();
        let dir = temp_dir("show");
        let first = resolve_text(
            &dir,
            "shop-replication-factor = -1\nsuper-users = [\"User:a\", \"User:b\"]\nshop = false\n",
        )
        .unwrap();
        let shown = render(&first);
        assert!(shown.contains("shop = false  # file"), "{shown}");
        assert!(
            shown.contains("data-dir = \"./sluice-data\"  # default"),
            "{shown}"
        );
        let second = resolve_text(&dir, &shown).unwrap();
        assert_eq!(first.node.super_users, second.node.super_users);
        assert_eq!(second.node.super_users, vec!["User:a", "User:b"]);
        assert_eq!(format!("{:?}", first.node), format!("{:?}", second.node));
        let _ = std::fs::remove_dir_all(dir);
    }
}
