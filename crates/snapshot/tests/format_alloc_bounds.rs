//! The loader must not allocate for a length before the bytes it announces arrive: a hostile
//! file claiming a multi-GiB string must fail at its end having reserved at most a few buffers.
//! Checked through the process's peak virtual size (`VmPeak`), which a large `Vec` reservation
//! raises even if its pages are never touched. This file holds one test so that no other test
//! thread allocates meanwhile.

mod format_support;

use forkless_snapshot::format::opcode;
use format_support::{NOW_MS, header, load_into};

fn vm_peak_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmPeak:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn absurd_lengths_reserve_no_memory() {
    let Some(before) = vm_peak_bytes() else {
        eprintln!(
            "!!!!!!!! SKIPPING absurd_lengths_reserve_no_memory: no /proc/self/status !!!!!!!!"
        );
        return;
    };
    let three_gib = 3u64 << 30;
    let bodies: [Vec<u8>; 5] = [
        // A key claiming 3 GiB, then 3 bytes.
        [&[0u8, 0x80][..], &(three_gib as u32).to_be_bytes(), b"abc"].concat(),
        // A value claiming 2^63 bytes.
        [
            &[0u8, 1, b'k', 0x81][..],
            &(1u64 << 63).to_be_bytes(),
            b"abc",
        ]
        .concat(),
        // An LZF string whose compressed part claims 3 GiB.
        [
            &[0u8, 1, b'k', 0xc3, 0x80][..],
            &(three_gib as u32).to_be_bytes(),
            &[0x40, 0x64],
        ]
        .concat(),
        // An LZF string claiming to expand 20 bytes to 3 GiB (more than LZF can).
        [
            &[0u8, 1, b'k', 0xc3, 20, 0x80][..],
            &(three_gib as u32).to_be_bytes(),
            &[0; 20],
        ]
        .concat(),
        // An AUX value claiming 3 GiB.
        [
            &[opcode::AUX, 1, b'a', 0x80][..],
            &(three_gib as u32).to_be_bytes(),
            b"abc",
        ]
        .concat(),
    ];
    for body in bodies {
        let mut file = header();
        file.extend_from_slice(&body);
        assert!(load_into(&file[..], NOW_MS).is_err());
    }
    let after = vm_peak_bytes().unwrap();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "peak virtual size grew by {} MiB",
        grown >> 20
    );
}
