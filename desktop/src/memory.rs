//! Keeping the desktop app's idle memory low (issue 8): choices made at start-up, before WebKit
//! or any thread starts, and a heap trim once start-up is over.
//!
//! Measured with `cargo xtask bench app` (PSS of the app and its WebKit processes, idle, signed
//! in to the bundled lab); the report of each change is in the commit that made it.

use std::path::Path;
use std::time::Duration;

/// What [`prepare`] chose for this process, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choices {
    /// WebKit draws the page on the CPU instead of compositing it with OpenGL: there is no GPU,
    /// so OpenGL would be Mesa's software rasterizer (llvmpipe), which is slower than WebKit's
    /// own CPU drawing and costs the web process about 85 MiB more.
    pub cpu_drawing: bool,
    /// WebKit's DMA-BUF renderer is off (see [`NO_DMABUF`]).
    pub no_dmabuf: bool,
    /// The number of glibc malloc arenas is capped (see [`MALLOC_ARENAS`]).
    pub arenas_capped: bool,
}

/// WebKitGTK's switch for drawing without accelerated compositing (the environment form of
/// `hardware-acceleration-policy` = never, read by the UI and web processes when they start).
const NO_COMPOSITING: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// WebKitGTK's switch for its DMA-BUF renderer (web process pictures handed to the UI process as
/// GPU buffers): without a GPU there are no such buffers, and its set-up still costs the app
/// process about 4 MiB.
const NO_DMABUF: &str = "WEBKIT_DISABLE_DMABUF_RENDERER";

// JavaScriptCore's JIT stays whole: without its optimizing tiers (`JSC_useDFGJIT=false`) the
// web process is 3 MiB smaller, but the ui's I420-to-RGBA conversion of a 640x480 picture
// takes 28 ms instead of 1 ms (measured in WebKitGTK 2.50): too slow for 30 pictures a second.

/// glibc's own setting of the arena cap; when the user set it, theirs stays.
const ARENA_ENV: &str = "MALLOC_ARENA_MAX";

/// The glibc malloc arenas the app may use. glibc gives every thread that allocates under
/// contention an arena of its own (up to 8 per core), each keeping freed memory for itself;
/// two are plenty for an app that is idle most of the time.
pub const MALLOC_ARENAS: i32 = 2;

/// How long after launch the heap is trimmed: start-up (the ui's first load, signing in, the
/// bundled lab) is over by then.
pub const TRIM_AFTER: Duration = Duration::from_secs(10);

/// Makes the process-wide choices; a setting the user made in the environment (any value of
/// `WEBKIT_DISABLE_COMPOSITING_MODE`, `WEBKIT_DISABLE_DMABUF_RENDERER` or `MALLOC_ARENA_MAX`) is
/// theirs to keep.
/// Must be the first thing `main` does: it changes the environment, which is only sound while
/// no other thread exists, and WebKit reads it when its processes start.
pub fn prepare() -> Choices {
    let user_set = |name: &str| std::env::var_os(name).is_some();
    let gpu = has_gpu(Path::new("/dev/dri"));
    let cpu_drawing = wants_cpu_drawing(gpu, user_set(NO_COMPOSITING));
    if cpu_drawing {
        set_env_before_threads(NO_COMPOSITING, "1");
    }
    let no_dmabuf = wants_cpu_drawing(gpu, user_set(NO_DMABUF));
    if no_dmabuf {
        set_env_before_threads(NO_DMABUF, "1");
    }
    Choices {
        cpu_drawing,
        no_dmabuf,
        arenas_capped: !user_set(ARENA_ENV) && cap_malloc_arenas(),
    }
}

/// Whether WebKit should draw on the CPU (and so skip what only a GPU serves): when the machine
/// has no GPU, unless the user already decided.
fn wants_cpu_drawing(has_gpu: bool, user_decided: bool) -> bool {
    !has_gpu && !user_decided
}

/// Whether `dri` (normally `/dev/dri`) has a GPU render node (`renderD128`…): every Linux GPU
/// driver that OpenGL can use (Mesa's and NVIDIA's) makes one; without one, OpenGL is software.
fn has_gpu(dri: &Path) -> bool {
    std::fs::read_dir(dri).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    })
}

#[allow(unsafe_code)]
fn set_env_before_threads(name: &str, value: &str) {
    // SAFETY: called from `prepare`, the first thing `main` does, before any thread exists: no
    // other thread can read or write the environment at the same time.
    unsafe { std::env::set_var(name, value) };
}

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`]; whether it could.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn cap_malloc_arenas() -> bool {
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive count.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) == 1 }
}

/// Other allocators have no arenas to cap.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cap_malloc_arenas() -> bool {
    false
}

/// Gives the free memory of the heap back to the system (glibc keeps what start-up freed, in
/// the middle of its heaps, until asked); whether any was given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim_heap() -> bool {
    // SAFETY: malloc_trim only releases free pages of the allocator's own heaps; it is
    // thread-safe (it locks each arena).
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators return memory by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_heap() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_node_is_a_gpu() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_gpu(dir.path()), "an empty folder");
        std::fs::write(dir.path().join("card0"), b"").unwrap();
        assert!(!has_gpu(dir.path()), "a display card without a render node");
        std::fs::write(dir.path().join("renderD128"), b"").unwrap();
        assert!(has_gpu(dir.path()));
        assert!(!has_gpu(&dir.path().join("missing")), "no /dev/dri at all");
    }

    #[test]
    fn the_cpu_draws_only_without_gpu_and_without_the_users_choice() {
        assert!(wants_cpu_drawing(false, false));
        assert!(!wants_cpu_drawing(true, false));
        assert!(!wants_cpu_drawing(false, true), "the user's setting stays");
        assert!(!wants_cpu_drawing(true, true));
    }

    #[test]
    fn the_heap_can_be_trimmed_after_freeing() {
        // Many small blocks freed below a block still in use leave free pages inside the heap,
        // which glibc keeps until a trim finds them.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 4000]).collect();
        let pin = vec![1u8; 4000];
        drop(blocks);
        let trimmed = trim_heap();
        assert_eq!(pin.len(), 4000);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(trimmed, "glibc gave nothing back after 16 MB were freed");
        }
    }
}
