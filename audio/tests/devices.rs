//! Sound devices: whatever this machine has (often nothing), nothing panics and a
//! missing device is a clear error.

use parley_audio::{list_devices, open_sink, open_source, AudioError, FRAME_SAMPLES};
use std::time::Instant;

#[test]
fn listing_devices_does_not_panic() {
    match list_devices() {
        Ok(devices) => {
            for d in &devices {
                eprintln!("device: {d:?}");
                assert!(!d.name.is_empty());
            }
        }
        Err(e) => eprintln!("listing devices failed (acceptable here): {e}"),
    }
}

#[test]
fn default_devices_open_or_fail_cleanly() {
    let start = Instant::now();
    match open_source(None, None) {
        Ok(mut source) => {
            let frame = source.next_frame().expect("a device source never ends");
            assert_eq!(frame.len(), FRAME_SAMPLES);
        }
        Err(e) => {
            eprintln!("no input device: {e}");
            assert!(e.to_string().contains("--input"), "{e}");
        }
    }
    match open_sink(None, None) {
        Ok(mut sink) => {
            sink.play(&[0.0; FRAME_SAMPLES]).expect("play");
            sink.finish().expect("finish");
        }
        Err(e) => {
            eprintln!("no output device: {e}");
            assert!(e.to_string().contains("--output"), "{e}");
        }
    }
    assert!(
        start.elapsed().as_secs() < 30,
        "opening devices must not hang"
    );
}

#[test]
fn an_unknown_device_name_is_a_clear_error() {
    let name = "no-such-device-4b1d";
    for result in [
        open_source(None, Some(name)).map(|_| ()),
        open_sink(None, Some(name)).map(|_| ()),
    ] {
        match result {
            Err(e @ AudioError::DeviceNotFound { .. }) => {
                assert!(e.to_string().contains(name), "{e}");
            }
            Err(e) => eprintln!("device enumeration unavailable: {e}"),
            Ok(()) => panic!("opened a device that does not exist"),
        }
    }
}

/// ALSA's `null` device (present wherever ALSA is) exercises the real stream threads,
/// ring buffers and format conversion without sound hardware. Its callbacks are not
/// paced in real time, so only shapes and termination are checked.
#[test]
fn the_null_device_streams_frames_both_ways() {
    let Ok(devices) = list_devices() else { return };
    let Some(null) = devices.iter().find(|d| d.name.ends_with(":null")) else {
        eprintln!("no null device here: {devices:?}");
        return;
    };
    let start = Instant::now();
    if null.is_input {
        let mut source = open_source(None, Some(&null.name)).expect("open null capture");
        for _ in 0..5 {
            let frame = source.next_frame().expect("a device source never ends");
            assert_eq!(frame.len(), FRAME_SAMPLES);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    if null.is_output {
        let mut sink = open_sink(None, Some(&null.name)).expect("open null playback");
        for _ in 0..5 {
            sink.play(&[0.25; FRAME_SAMPLES]).expect("play");
        }
        sink.finish().expect("finish");
        sink.finish().expect("finish twice");
    }
    assert!(start.elapsed().as_secs() < 10);
}
