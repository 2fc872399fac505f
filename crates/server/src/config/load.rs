//! Loading: the config file, `include`, and the command line turned into config lines.

use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use super::lexer::{repr, split_args, trim};
use super::parse::utf8;
use super::table::lookup;
use super::{Config, ConfigError, Invocation};

/// How deep `include` directives may nest before loading fails (Redis has no limit and
/// recurses until it crashes on a loop).
pub(super) const MAX_INCLUDE_DEPTH: usize = 16;

/// State that lives for one load (file, includes and command line together).
#[derive(Default)]
pub(super) struct LoadState {
    /// Options already set by this load, so that repeated `save` lines accumulate.
    pub(super) seen: Vec<&'static str>,
    pub(super) include_depth: usize,
}

impl Config {
    /// Parses the command line (without `argv[0]`) as `redis-server` does: `-v`/`--version` or
    /// `-h`/`--help` first; else an optional config file (a first argument not starting with
    /// `-`), then `--name value...` options, each taking every following argument up to the
    /// next `--name` (`--save` with nothing after it means `--save ""`), and `-` as the first
    /// or last argument to read more config from standard input. The options become lines of a
    /// virtual file after the config file's, so errors name them with Redis's line numbers.
    pub fn from_args(args: &[String]) -> Result<Invocation, ConfigError> {
        match args.first().map(String::as_str) {
            Some("-v" | "--version") => return Ok(Invocation::Version),
            Some("-h" | "--help") => return Ok(Invocation::Help),
            _ => {}
        }
        let mut config = Config::default();
        let mut options_start = 0;
        if let Some(first) = args.first().filter(|arg| !arg.starts_with('-')) {
            let path = std::path::absolute(first).map_err(|err| ConfigError::Open {
                path: PathBuf::from(first),
                reason: strerror(&err),
            })?;
            config.config_file = Some(path);
            options_start = 1;
        }
        let (options, from_stdin) = command_line_options(args, options_start);

        let mut text = Vec::new();
        if let Some(path) = &config.config_file {
            text = read_config_file(path)?;
        }
        if from_stdin {
            io::stdin()
                .lock()
                .read_to_end(&mut text)
                .map_err(|err| ConfigError::Open {
                    path: PathBuf::from("-"),
                    reason: strerror(&err),
                })?;
        }
        text.push(b'\n');
        text.extend_from_slice(&options);
        config.load(&text, &mut LoadState::default())?;
        Ok(Invocation::Run(config))
    }

    /// Applies config-file `text` on top of `self`, as Redis's `loadServerConfigFromString`.
    pub(super) fn load(&mut self, text: &[u8], state: &mut LoadState) -> Result<(), ConfigError> {
        // Redis handles the text as a C string: a NUL byte ends it.
        let text = text.split(|&b| b == 0).next().unwrap_or_default();
        for (idx, raw_line) in text.split(|&b| b == b'\n').enumerate() {
            let line = trim(raw_line);
            if line.is_empty() || line.first() == Some(&b'#') {
                continue;
            }
            let fail = |reason: String| ConfigError::Directive {
                line_number: idx + 1,
                line: String::from_utf8_lossy(line).into_owned(),
                reason,
            };
            let argv = split_args(line)
                .ok_or_else(|| fail("Unbalanced quotes in configuration line".to_owned()))?;
            let Some((name, values)) = argv.split_first() else {
                continue;
            };
            if let Some(spec) = lookup(name) {
                let split;
                let args = match values {
                    // A multi-argument option given one non-empty argument splits it, so
                    // `--save "900 1 300 10"` works.
                    [only] if spec.is_multi() && !only.is_empty() => {
                        split = split_args(only).unwrap_or_default();
                        &split[..]
                    }
                    _ if spec.is_multi() => values,
                    [_] => values,
                    _ => return Err(fail("wrong number of arguments".to_owned())),
                };
                let append = state.seen.contains(&spec.name);
                spec.apply(self, args, append).map_err(fail)?;
                state.seen.push(spec.name);
            } else if name.eq_ignore_ascii_case(b"include") && values.len() == 1 {
                let [path] = values else { continue };
                if state.include_depth >= MAX_INCLUDE_DEPTH {
                    return Err(fail("too many nested include directives".to_owned()));
                }
                let path = self.dir.join(utf8(path).map_err(fail)?);
                let included = read_config_file(&path)?;
                state.include_depth += 1;
                self.load(&included, state)?;
                state.include_depth -= 1;
            } else if name.eq_ignore_ascii_case(b"user") && !values.is_empty() {
                if self
                    .acl_users
                    .iter()
                    .any(|line| line.first() == values.first())
                {
                    return Err(fail(
                        "Error in user declaration: Duplicate user found. A user can only be \
                         defined once in config files"
                            .to_owned(),
                    ));
                }
                let line = crate::acl::check_user_line(values).map_err(fail)?;
                self.acl_users.push(line);
            } else if let Some(reason) = unsupported_directive(name, values.len()) {
                return Err(fail(reason.to_owned()));
            } else {
                return Err(fail(
                    "Bad directive or wrong number of arguments".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// Builds the virtual config-file text for the command-line options after `start`, exactly as
/// Redis 7.0's `main()` does. Returns the text and whether `-` asked to read standard input.
pub(super) fn command_line_options(args: &[String], start: usize) -> (Vec<u8>, bool) {
    let mut options = Vec::new();
    let mut from_stdin = false;
    // False right after a `--name` with no value yet: the next argument is its value even if
    // it starts with `--`.
    let mut handled_last_name = true;
    let last = args.len().saturating_sub(1);
    for (idx, arg) in args.iter().enumerate().skip(start) {
        let next_is_name = args.get(idx + 1).is_some_and(|next| next.starts_with("--"));
        if arg == "-" && (idx == 0 || idx == last) {
            from_stdin = true;
        } else if handled_last_name && arg.starts_with("--") {
            if !options.is_empty() {
                options.push(b'\n');
            }
            options.extend_from_slice(arg.get(2..).unwrap_or_default().as_bytes());
            options.push(b' ');
            if split_args(arg.as_bytes()).is_some_and(|words| words.len() == 1) {
                // Only a name, like `--port`: values follow in the next arguments.
                handled_last_name = false;
                if arg.eq_ignore_ascii_case("--save") && (idx == last || next_is_name) {
                    // `--save` followed by nothing or by another option means `--save ""`.
                    options.extend_from_slice(b"\"\"");
                    handled_last_name = true;
                }
            } else {
                // Name and value in one argument, like "--port 6380".
                handled_last_name = true;
            }
        } else {
            options.extend_from_slice(&repr(arg.as_bytes()));
            options.push(b' ');
            handled_last_name = true;
        }
    }
    (options, from_stdin)
}

pub(super) fn read_config_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    fs::read(path).map_err(|err| ConfigError::Open {
        path: path.to_path_buf(),
        reason: strerror(&err),
    })
}

/// The bare OS error text, as C's `strerror` gives it (Rust appends " (os error N)").
pub(crate) fn strerror(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text.get(..cut).unwrap_or(&text).to_owned(),
        None => match err.kind() {
            io::ErrorKind::NotFound => "No such file or directory".to_owned(),
            io::ErrorKind::NotADirectory => "Not a directory".to_owned(),
            _ => text,
        },
    }
}

/// Redis 7.0's directives outside the option table that forkless cannot honour yet. Each one
/// restricts who may do what (renamed commands) or adds commands (modules), so
/// ignoring it would silently weaken security or lose function: loading fails, naming why.
fn unsupported_directive(name: &[u8], n_values: usize) -> Option<&'static str> {
    let is = |directive: &str| name.eq_ignore_ascii_case(directive.as_bytes());
    if is("rename-command") && n_values == 2 {
        Some(
            "rename-command is not supported by forkless yet: the command would stay \
             available under its own name",
        )
    } else if is("loadmodule") && n_values >= 1 {
        Some("loadmodule is not supported by forkless: modules are not implemented")
    } else if is("sentinel") {
        Some("sentinel directives are not supported by forkless: it is not a Sentinel")
    } else {
        None
    }
}
