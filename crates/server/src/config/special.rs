//! Options with their own syntax: get, set and CONFIG REWRITE lines.

use std::fs;
use std::io;

use super::load::strerror;
use super::parse::{c_strtoll, format_memory, parse_memory, utf8};
use super::{Config, MAX_BIND_ADDRESSES, OutputBufferLimit, OutputBufferLimits, SavePoint};

pub(super) fn requirepass_get(config: &Config) -> Vec<u8> {
    config.requirepass.clone().unwrap_or_default().into_bytes()
}

pub(super) fn requirepass_set(config: &mut Config, arg: &[u8]) -> Result<(), String> {
    config.requirepass = if arg.is_empty() {
        None
    } else {
        Some(utf8(arg)?)
    };
    Ok(())
}

pub(super) fn dir_get(config: &Config) -> Vec<u8> {
    config.dir.to_string_lossy().into_owned().into_bytes()
}

/// `dir`: like Redis's `chdir`, relative to the current `dir`, with `strerror` messages.
pub(super) fn dir_set(config: &mut Config, arg: &[u8]) -> Result<(), String> {
    if arg.is_empty() {
        return Err(strerror(&io::Error::from(io::ErrorKind::NotFound)));
    }
    let path = config.dir.join(utf8(arg)?);
    let canonical = fs::canonicalize(&path).map_err(|err| strerror(&err))?;
    if !canonical.is_dir() {
        return Err(strerror(&io::Error::from(io::ErrorKind::NotADirectory)));
    }
    config.dir = canonical;
    Ok(())
}

pub(super) fn dbfilename_get(config: &Config) -> Vec<u8> {
    config.dbfilename.clone().into_bytes()
}

pub(super) fn dbfilename_set(config: &mut Config, arg: &[u8]) -> Result<(), String> {
    if arg.contains(&b'/') || arg.contains(&b'\\') {
        return Err("dbfilename can't be a path, just a filename".to_owned());
    }
    config.dbfilename = utf8(arg)?;
    Ok(())
}

pub(super) fn logfile_get(config: &Config) -> Vec<u8> {
    config.logfile.clone().into_bytes()
}

pub(super) fn logfile_set(config: &mut Config, arg: &[u8]) -> Result<(), String> {
    config.logfile = utf8(arg)?;
    Ok(())
}

pub(super) fn bind_get(config: &Config) -> String {
    config.bind.join(" ")
}

pub(super) fn bind_set(config: &mut Config, args: &[Vec<u8>], _append: bool) -> Result<(), String> {
    if args.len() > MAX_BIND_ADDRESSES {
        return Err("Too many bind addresses specified.".to_owned());
    }
    // A single empty argument means no addresses.
    let args = if matches!(args, [only] if only.is_empty()) {
        &[][..]
    } else {
        args
    };
    config.bind = args.iter().map(|arg| utf8(arg)).collect::<Result<_, _>>()?;
    Ok(())
}

pub(super) fn bind_lines(config: &Config) -> Vec<Vec<u8>> {
    let addresses = if config.bind.is_empty() {
        "\"\"".to_owned()
    } else {
        bind_get(config)
    };
    vec![format!("bind {addresses}").into_bytes()]
}

pub(super) fn save_get(config: &Config) -> String {
    let points: Vec<String> = config
        .save
        .iter()
        .map(|p| format!("{} {}", p.seconds, p.changes))
        .collect();
    points.join(" ")
}

/// `save`: pairs of seconds (>= 1) and changes (>= 0), parsed with `strtoll` as Redis does. In
/// a config file the first `save` line replaces the defaults and later ones add points; a lone
/// `""` clears them.
pub(super) fn save_set(config: &mut Config, args: &[Vec<u8>], append: bool) -> Result<(), String> {
    let args = if matches!(args, [only] if only.is_empty()) {
        config.save.clear();
        &[][..]
    } else {
        args
    };
    const INVALID: &str = "Invalid save parameters";
    if args.len() % 2 != 0 {
        return Err(INVALID.to_owned());
    }
    let mut points = Vec::with_capacity(args.len() / 2);
    for pair in args.chunks_exact(2) {
        let [seconds, changes] = pair else {
            return Err(INVALID.to_owned());
        };
        let (seconds, seconds_whole) = c_strtoll(seconds);
        let (changes, changes_whole) = c_strtoll(changes);
        if !seconds_whole || !changes_whole || seconds < 1 || changes < 0 {
            return Err(INVALID.to_owned());
        }
        points.push(SavePoint {
            seconds: seconds.unsigned_abs(),
            changes: changes.unsigned_abs(),
        });
    }
    if !append {
        config.save.clear();
    }
    config.save.extend(points);
    Ok(())
}

pub(super) fn save_lines(config: &Config) -> Vec<Vec<u8>> {
    if config.save.is_empty() {
        return vec![b"save \"\"".to_vec()];
    }
    config
        .save
        .iter()
        .map(|p| format!("save {} {}", p.seconds, p.changes).into_bytes())
        .collect()
}

/// The client classes in Redis's order, with the names CONFIG GET shows.
pub(super) fn obuf_classes(limits: &OutputBufferLimits) -> [(&'static str, &OutputBufferLimit); 3] {
    [
        ("normal", &limits.normal),
        ("slave", &limits.replica),
        ("pubsub", &limits.pubsub),
    ]
}

pub(super) fn obuf_get(config: &Config) -> String {
    let classes: Vec<String> = obuf_classes(&config.client_output_buffer_limit)
        .iter()
        .map(|(name, l)| {
            format!(
                "{name} {} {} {}",
                l.hard_limit_bytes, l.soft_limit_bytes, l.soft_limit_seconds
            )
        })
        .collect();
    classes.join(" ")
}

/// `client-output-buffer-limit <class> <hard> <soft> <soft seconds> [...]`: validates all
/// groups before changing any, as Redis does; classes not named keep their limits.
pub(super) fn obuf_set(config: &mut Config, args: &[Vec<u8>], _append: bool) -> Result<(), String> {
    if args.len() % 4 != 0 {
        return Err("Wrong number of arguments in buffer limit configuration.".to_owned());
    }
    let class_of = |name: &[u8]| -> Option<u8> {
        match name.to_ascii_lowercase().as_slice() {
            b"normal" => Some(0),
            b"slave" | b"replica" => Some(1),
            b"pubsub" => Some(2),
            _ => None, // "master" exists in Redis but cannot be configured
        }
    };
    let mut updates = Vec::with_capacity(args.len() / 4);
    for group in args.chunks_exact(4) {
        let [class, hard, soft, seconds] = group else {
            continue;
        };
        let Some(class) = class_of(class) else {
            return Err("Invalid client class specified in buffer limit configuration.".to_owned());
        };
        // Redis validates all three numbers with memtoll (so "1k" seconds passes) and then
        // reads the seconds with strtoll.
        let (Some(hard), Some(soft), Some(_)) = (
            parse_memory(hard),
            parse_memory(soft),
            parse_memory(seconds),
        ) else {
            return Err(
                "Error in hard, soft or soft_seconds setting in buffer limit \
                        configuration."
                    .to_owned(),
            );
        };
        let seconds = c_strtoll(seconds).0.unsigned_abs();
        updates.push((
            class,
            OutputBufferLimit {
                hard_limit_bytes: hard,
                soft_limit_bytes: soft,
                soft_limit_seconds: seconds,
            },
        ));
    }
    let limits = &mut config.client_output_buffer_limit;
    for (class, limit) in updates {
        match class {
            0 => limits.normal = limit,
            1 => limits.replica = limit,
            _ => limits.pubsub = limit,
        }
    }
    Ok(())
}

pub(super) fn obuf_lines(config: &Config) -> Vec<Vec<u8>> {
    obuf_classes(&config.client_output_buffer_limit)
        .iter()
        .map(|(name, l)| {
            format!(
                "client-output-buffer-limit {name} {} {} {}",
                format_memory(l.hard_limit_bytes),
                format_memory(l.soft_limit_bytes),
                l.soft_limit_seconds
            )
            .into_bytes()
        })
        .collect()
}
