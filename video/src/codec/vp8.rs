//! VP8 through the system libvpx (`vpx_sys`): a real-time, error-resilient CBR encoder and a
//! decoder that refuses oversized keyframes before libvpx allocates anything.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_uint, c_ulong};
use std::ptr;

use vpx_sys::{
    VPX_CODEC_OK, VPX_DECODER_ABI_VERSION, VPX_DL_REALTIME, VPX_EFLAG_FORCE_KF,
    VPX_ENCODER_ABI_VERSION, VPX_ERROR_RESILIENT_DEFAULT, VPX_FRAME_IS_KEY, vp8_dec_control_id,
    vp8e_enc_control_id, vpx_codec_ctx_t, vpx_codec_cx_pkt_kind, vpx_codec_dec_cfg_t,
    vpx_codec_enc_cfg_t, vpx_codec_err_t, vpx_codec_iter_t, vpx_enc_pass, vpx_image_t, vpx_img_fmt,
    vpx_kf_mode, vpx_rc_mode,
};

use super::{CodecError, EncodedFrame, EncoderConfig, VideoCodecKind, VideoDecoder, VideoEncoder};
use crate::frame::{MAX_HEIGHT, MAX_WIDTH, VideoFrame};

/// Keyframe distance ceiling in seconds (keyframes otherwise come on demand).
const KEYFRAME_INTERVAL_SECS: u32 = 10;
/// Largest VP8 frame handed to libvpx (a 4096x2304 intra frame at the highest quality is far smaller).
const MAX_FRAME_BYTES: usize = 16 << 20;

/// The text of a libvpx error code.
fn err_text(err: vpx_codec_err_t) -> String {
    // SAFETY: vpx_codec_err_to_string returns a pointer to a static NUL-terminated string for
    // every code (unknown codes map to a generic string).
    let s = unsafe { vpx_sys::vpx_codec_err_to_string(err) };
    if s.is_null() {
        return format!("{err:?}");
    }
    // SAFETY: non-null, static, NUL-terminated (see above).
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

/// The last error of a context, with libvpx's detail when it has one.
fn ctx_error(ctx: &mut vpx_codec_ctx_t, err: vpx_codec_err_t) -> String {
    let mut text = err_text(err);
    // SAFETY: the context is initialised (callers only ask after a call on a live context);
    // vpx_codec_error_detail returns NULL or a NUL-terminated string owned by the context,
    // which we copy before the context is used again.
    let detail = unsafe { vpx_sys::vpx_codec_error_detail(ctx) };
    if !detail.is_null() {
        // SAFETY: non-null NUL-terminated string owned by the live context (see above).
        let d = unsafe { CStr::from_ptr(detail) }.to_string_lossy();
        text.push_str(": ");
        text.push_str(&d);
    }
    text
}

/// An initialised libvpx codec context; destroyed on drop.
struct Context {
    /// Boxed so its address never changes while libvpx holds it.
    ctx: Box<vpx_codec_ctx_t>,
}

// SAFETY: a libvpx context has no thread affinity; it is only ever used through `&mut self`
// of its single owner, so moving it to another thread is sound.
unsafe impl Send for Context {}

impl Context {
    /// A zeroed (not yet initialised) context.
    fn zeroed() -> Box<vpx_codec_ctx_t> {
        // SAFETY: vpx_codec_ctx_t is a plain C struct of pointers, integers and a C enum whose
        // zero value is VPX_CODEC_OK; all-zero is its documented "uninitialised" state.
        Box::new(unsafe { MaybeUninit::<vpx_codec_ctx_t>::zeroed().assume_init() })
    }

    fn control(&mut self, id: vp8e_enc_control_id, value: c_int) -> Result<(), CodecError> {
        // SAFETY: the context is an initialised VP8 encoder; every control used here takes one
        // int argument, which is what the variadic call passes.
        let err = unsafe { vpx_sys::vpx_codec_control_(&mut *self.ctx, id as c_int, value) };
        if err != VPX_CODEC_OK {
            return Err(CodecError::Config(format!(
                "vp8 control {id:?}={value}: {}",
                ctx_error(&mut self.ctx, err)
            )));
        }
        Ok(())
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: a `Context` only exists for a successfully initialised context, destroyed
        // exactly once here.
        unsafe {
            vpx_sys::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

/// A libvpx VP8 encoder in real-time, error-resilient CBR mode.
pub struct Vp8Encoder {
    config: EncoderConfig,
    /// Boxed: libvpx may keep a pointer to the configuration it was initialised with.
    cfg: Box<vpx_codec_enc_cfg_t>,
    ctx: Option<Context>,
    pts: i64,
}

// SAFETY: the libvpx configuration's raw pointers (two-pass stats buffers) stay NULL in
// one-pass mode, and the context is only used through `&mut self`; nothing is tied to a thread.
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    /// A VP8 encoder for `config` (size checked against the maximum, bitrate and fps clamped).
    pub fn new(config: EncoderConfig) -> Result<Self, CodecError> {
        let config = config.validated()?;
        // SAFETY: vpx_codec_enc_cfg_t is a plain C struct; it is fully written by
        // vpx_codec_enc_config_default below before use.
        let mut cfg: Box<vpx_codec_enc_cfg_t> =
            Box::new(unsafe { MaybeUninit::<vpx_codec_enc_cfg_t>::zeroed().assume_init() });
        // SAFETY: the VP8 interface pointer is static; cfg is a valid, writable struct.
        let err = unsafe {
            vpx_sys::vpx_codec_enc_config_default(vpx_sys::vpx_codec_vp8_cx(), &mut *cfg, 0)
        };
        if err != VPX_CODEC_OK {
            return Err(CodecError::Unavailable(format!(
                "libvpx VP8 encoder defaults: {}",
                err_text(err)
            )));
        }
        let mut enc = Vp8Encoder {
            config,
            cfg,
            ctx: None,
            pts: 0,
        };
        enc.init()?;
        Ok(enc)
    }

    /// Writes `self.config` into the libvpx configuration.
    fn fill_cfg(&mut self) {
        let c = &self.config;
        let cfg = &mut *self.cfg;
        cfg.g_w = c.width;
        cfg.g_h = c.height;
        cfg.g_threads = super::encoder_threads(c.width, c.height);
        cfg.g_timebase.num = 1;
        cfg.g_timebase.den = c.fps as c_int;
        cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
        cfg.g_pass = vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.g_lag_in_frames = 0;
        cfg.rc_end_usage = vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = (c.bitrate_bps / 1000).max(1);
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        // Drop frames rather than overshoot when the rate cannot be held (as WebRTC does).
        cfg.rc_dropframe_thresh = 30;
        cfg.rc_resize_allowed = 0;
        cfg.kf_mode = vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = c.fps * KEYFRAME_INTERVAL_SECS;
    }

    /// (Re)creates the libvpx context for the current configuration.
    fn init(&mut self) -> Result<(), CodecError> {
        self.ctx = None;
        self.fill_cfg();
        let mut ctx = Context::zeroed();
        // SAFETY: ctx is a zeroed context, cfg a complete configuration from
        // vpx_codec_enc_config_default; both are boxed and outlive the encoder context
        // (cfg lives in self, ctx in the Context that is dropped first on re-init).
        let err = unsafe {
            vpx_sys::vpx_codec_enc_init_ver(
                &mut *ctx,
                vpx_sys::vpx_codec_vp8_cx(),
                &*self.cfg,
                0,
                VPX_ENCODER_ABI_VERSION as c_int,
            )
        };
        if err != VPX_CODEC_OK {
            // A failed init leaves nothing to destroy.
            return Err(CodecError::Config(format!(
                "libvpx VP8 encoder init {}x{}: {}",
                self.config.width,
                self.config.height,
                err_text(err)
            )));
        }
        let mut ctx = Context { ctx };
        let pixels = self.config.width * self.config.height;
        // Real-time speed: -6 up to VGA, -8 above (720p at 30 fps within one core).
        let cpu_used = if pixels > 640 * 480 { -8 } else { -6 };
        ctx.control(vp8e_enc_control_id::VP8E_SET_CPUUSED, cpu_used)?;
        ctx.control(vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY, 0)?;
        ctx.control(vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD, 1)?;
        ctx.control(vp8e_enc_control_id::VP8E_SET_TOKEN_PARTITIONS, 0)?;
        // Keyframes at most ~this many percent of a frame's budget, as WebRTC does
        // (optimal buffer x 0.5 x fps / 10), so a forced keyframe does not burst the link.
        let max_intra = (600 * self.config.fps / 20).max(300);
        ctx.control(
            vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT,
            max_intra as c_int,
        )?;
        self.ctx = Some(ctx);
        self.pts = 0;
        Ok(())
    }
}

impl VideoEncoder for Vp8Encoder {
    fn kind(&self) -> VideoCodecKind {
        VideoCodecKind::Vp8
    }

    fn encode(
        &mut self,
        frame: &VideoFrame,
        force_keyframe: bool,
    ) -> Result<Option<EncodedFrame>, CodecError> {
        super::check_dimensions(frame.width, frame.height)?;
        if !frame.is_consistent() {
            return Err(CodecError::Encode(
                "frame planes do not match its size".into(),
            ));
        }
        if frame.width != self.config.width || frame.height != self.config.height {
            self.config.width = frame.width;
            self.config.height = frame.height;
            self.init()?;
        }
        if self.ctx.is_none() {
            self.init()?;
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(CodecError::Encode("no encoder context".into()));
        };
        // SAFETY: vpx_image_t is a plain C struct; all-zero is valid (format NONE, null planes)
        // and every field libvpx reads for I420 input is set below.
        let mut img: vpx_image_t = unsafe { MaybeUninit::zeroed().assume_init() };
        img.fmt = vpx_img_fmt::VPX_IMG_FMT_I420;
        img.w = frame.width;
        img.h = frame.height;
        img.d_w = frame.width;
        img.d_h = frame.height;
        img.r_w = frame.width;
        img.r_h = frame.height;
        img.bit_depth = 8;
        img.x_chroma_shift = 1;
        img.y_chroma_shift = 1;
        img.bps = 12;
        // libvpx only reads the source planes (the API takes `*const vpx_image_t`).
        img.planes[0] = frame.y.as_ptr().cast_mut();
        img.planes[1] = frame.u.as_ptr().cast_mut();
        img.planes[2] = frame.v.as_ptr().cast_mut();
        img.stride[0] = frame.width as c_int;
        img.stride[1] = frame.chroma_width() as c_int;
        img.stride[2] = frame.chroma_width() as c_int;
        let flags = if force_keyframe {
            VPX_EFLAG_FORCE_KF as _
        } else {
            0
        };
        // SAFETY: the context is an initialised VP8 encoder for exactly this frame size; the
        // image describes the frame's planes, whose lengths were checked by is_consistent
        // (w*h luma, ceil(w/2)*ceil(h/2) chroma) and which outlive this call.
        let err = unsafe {
            vpx_sys::vpx_codec_encode(
                &mut *ctx.ctx,
                &img,
                self.pts,
                1,
                flags,
                VPX_DL_REALTIME as c_ulong,
            )
        };
        self.pts += 1;
        if err != VPX_CODEC_OK {
            return Err(CodecError::Encode(ctx_error(&mut ctx.ctx, err)));
        }
        let mut out: Option<EncodedFrame> = None;
        let mut iter: vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: the iterator starts NULL and is only advanced by libvpx; packets stay
            // valid until the next encode call, and we copy their data right away.
            let pkt = unsafe { vpx_sys::vpx_codec_get_cx_data(&mut *ctx.ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: non-null packet from libvpx (see above).
            let pkt = unsafe { &*pkt };
            if pkt.kind != vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: for VPX_CODEC_CX_FRAME_PKT the `frame` member of the union is active.
            let f = unsafe { pkt.data.frame };
            if f.buf.is_null() || f.sz == 0 {
                continue;
            }
            // SAFETY: libvpx guarantees `buf` points at `sz` bytes of compressed data.
            let data = unsafe { std::slice::from_raw_parts(f.buf.cast::<u8>(), f.sz as usize) };
            let keyframe = f.flags & VPX_FRAME_IS_KEY != 0;
            match out.as_mut() {
                Some(o) => {
                    o.data.extend_from_slice(data);
                    o.keyframe |= keyframe;
                }
                None => {
                    out = Some(EncodedFrame {
                        data: data.to_vec(),
                        keyframe,
                    })
                }
            }
        }
        Ok(out)
    }

    fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        let bps = bps.clamp(super::MIN_BITRATE_BPS, super::MAX_BITRATE_BPS);
        self.config.bitrate_bps = bps;
        self.cfg.rc_target_bitrate = (bps / 1000).max(1);
        let Some(ctx) = self.ctx.as_mut() else {
            return Ok(());
        };
        // SAFETY: initialised encoder context; cfg is a complete configuration of the same
        // size the context was created with (only the bitrate changed).
        let err = unsafe { vpx_sys::vpx_codec_enc_config_set(&mut *ctx.ctx, &*self.cfg) };
        if err != VPX_CODEC_OK {
            return Err(CodecError::Config(format!(
                "vp8 bitrate {bps}: {}",
                ctx_error(&mut ctx.ctx, err)
            )));
        }
        Ok(())
    }

    fn config(&self) -> &EncoderConfig {
        &self.config
    }
}

/// Size of a VP8 keyframe as its header states it, after checking the frame tag and start
/// code; `Ok(None)` for an interframe. Errors for truncated or malformed headers.
pub fn keyframe_size(data: &[u8]) -> Result<Option<(u32, u32)>, CodecError> {
    let Some(tag) = data.get(..3) else {
        return Err(CodecError::Decode(format!(
            "VP8 frame of {} bytes is truncated",
            data.len()
        )));
    };
    let tag = u32::from(tag[0]) | u32::from(tag[1]) << 8 | u32::from(tag[2]) << 16;
    let interframe = tag & 1 != 0;
    let version = (tag >> 1) & 7;
    let first_partition = (tag >> 5) as usize;
    if version > 3 {
        return Err(CodecError::Decode(format!("VP8 version {version}")));
    }
    if interframe {
        if first_partition > data.len() - 3 {
            return Err(CodecError::Decode("VP8 first partition truncated".into()));
        }
        return Ok(None);
    }
    let Some(hdr) = data.get(3..10) else {
        return Err(CodecError::Decode("VP8 keyframe header truncated".into()));
    };
    if hdr[..3] != [0x9d, 0x01, 0x2a] {
        return Err(CodecError::Decode("VP8 keyframe start code missing".into()));
    }
    let width = u32::from(u16::from_le_bytes([hdr[3], hdr[4]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([hdr[5], hdr[6]]) & 0x3fff);
    if width > MAX_WIDTH || height > MAX_HEIGHT {
        return Err(CodecError::TooLarge { width, height });
    }
    if width == 0 || height == 0 {
        return Err(CodecError::Decode(format!(
            "VP8 keyframe size {width}x{height}"
        )));
    }
    if first_partition > data.len() - 10 {
        return Err(CodecError::Decode("VP8 first partition truncated".into()));
    }
    Ok(Some((width, height)))
}

/// A libvpx VP8 decoder.
pub struct Vp8Decoder {
    ctx: Context,
    have_keyframe: bool,
}

impl Vp8Decoder {
    /// A VP8 decoder (one thread).
    pub fn new() -> Result<Self, CodecError> {
        let mut ctx = Context::zeroed();
        let cfg = vpx_codec_dec_cfg_t {
            threads: 1,
            w: 0,
            h: 0,
        };
        // SAFETY: zeroed boxed context, valid configuration that libvpx copies during init,
        // static VP8 decoder interface.
        let err = unsafe {
            vpx_sys::vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx_sys::vpx_codec_vp8_dx(),
                &cfg,
                0,
                VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if err != VPX_CODEC_OK {
            return Err(CodecError::Unavailable(format!(
                "libvpx VP8 decoder init: {}",
                err_text(err)
            )));
        }
        Ok(Vp8Decoder {
            ctx: Context { ctx },
            have_keyframe: false,
        })
    }
}

impl VideoDecoder for Vp8Decoder {
    fn kind(&self) -> VideoCodecKind {
        VideoCodecKind::Vp8
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<VideoFrame>, CodecError> {
        if data.len() > MAX_FRAME_BYTES {
            return Err(CodecError::Decode(format!(
                "VP8 frame of {} bytes is too large",
                data.len()
            )));
        }
        let keyframe = keyframe_size(data)?.is_some();
        if !keyframe && !self.have_keyframe {
            return Err(CodecError::Decode(
                "VP8 interframe before the first keyframe".into(),
            ));
        }
        // SAFETY: initialised decoder context; `data` is a valid slice of `len` bytes (checked
        // to fit c_uint above) that libvpx reads during this call only.
        let err = unsafe {
            vpx_sys::vpx_codec_decode(
                &mut *self.ctx.ctx,
                data.as_ptr(),
                data.len() as c_uint,
                ptr::null_mut(),
                0,
            )
        };
        if err != VPX_CODEC_OK {
            return Err(CodecError::Decode(ctx_error(&mut self.ctx.ctx, err)));
        }
        if keyframe {
            self.have_keyframe = true;
        }
        let mut corrupted: c_int = 0;
        // SAFETY: initialised VP8 decoder; VP8D_GET_FRAME_CORRUPTED writes one int through
        // the pointer, which points at a live local.
        let err = unsafe {
            vpx_sys::vpx_codec_control_(
                &mut *self.ctx.ctx,
                vp8_dec_control_id::VP8D_GET_FRAME_CORRUPTED as c_int,
                &mut corrupted as *mut c_int,
            )
        };
        if err == VPX_CODEC_OK && corrupted != 0 {
            // Missing data in this frame or in a frame it references: showing it would show
            // garbage until the next keyframe, so report it (the session asks for a keyframe).
            return Err(CodecError::Decode(
                "VP8 frame corrupted (missing data or references)".into(),
            ));
        }
        let mut picture = None;
        let mut iter: vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: iterator starts NULL and is advanced by libvpx; the image stays valid
            // until the next decode call and is copied before that.
            let img = unsafe { vpx_sys::vpx_codec_get_frame(&mut *self.ctx.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            // SAFETY: non-null image owned by the decoder (see above).
            picture = Some(copy_image(unsafe { &*img })?);
        }
        Ok(picture)
    }
}

/// Copies a decoded libvpx I420 image into a tightly packed frame, honouring the strides.
fn copy_image(img: &vpx_image_t) -> Result<VideoFrame, CodecError> {
    let (w, h) = (img.d_w, img.d_h);
    if w > MAX_WIDTH || h > MAX_HEIGHT {
        return Err(CodecError::TooLarge {
            width: w,
            height: h,
        });
    }
    if w == 0 || h == 0 {
        return Err(CodecError::Decode("decoded an empty picture".into()));
    }
    if img.fmt != vpx_img_fmt::VPX_IMG_FMT_I420
        || img.x_chroma_shift != 1
        || img.y_chroma_shift != 1
    {
        return Err(CodecError::Decode(format!(
            "unsupported decoded format {:?}",
            img.fmt
        )));
    }
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let plane = |i: usize, pw: u32, ph: u32| -> Result<Vec<u8>, CodecError> {
        let stride = img.stride[i];
        let base = img.planes[i];
        if base.is_null() || stride < 0 || (stride as u32) < pw {
            return Err(CodecError::Decode(format!(
                "decoded plane {i} has stride {stride} for width {pw}"
            )));
        }
        let mut out = Vec::with_capacity(pw as usize * ph as usize);
        for row in 0..ph as usize {
            // SAFETY: libvpx's image holds `ph` rows of at least `pw` bytes each, `stride`
            // bytes apart, starting at `base` (checked non-null, stride >= width above).
            let line =
                unsafe { std::slice::from_raw_parts(base.add(row * stride as usize), pw as usize) };
            out.extend_from_slice(line);
        }
        Ok(out)
    };
    let y = plane(0, w, h)?;
    let u = plane(1, cw, ch)?;
    let v = plane(2, cw, ch)?;
    VideoFrame::from_planes(w, h, y, u, v).map_err(|e| CodecError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_header_checks() {
        // 16000x16000 keyframe: TooLarge before libvpx sees it.
        let mut kf = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        kf.extend_from_slice(&16000u16.to_le_bytes());
        kf.extend_from_slice(&16000u16.to_le_bytes());
        kf.extend_from_slice(&[0; 32]);
        assert!(matches!(
            keyframe_size(&kf),
            Err(CodecError::TooLarge {
                width: 16000,
                height: 16000
            })
        ));
        assert!(matches!(keyframe_size(&[0x10]), Err(CodecError::Decode(_))));
        let mut bad = kf.clone();
        bad[4] = 0;
        assert!(matches!(keyframe_size(&bad), Err(CodecError::Decode(_))));
        let mut ok = kf;
        ok[6..10].copy_from_slice(&[64, 0, 48, 0]);
        assert_eq!(keyframe_size(&ok).unwrap(), Some((64, 48)));
        assert_eq!(keyframe_size(&[0x01, 0, 0, 1, 2]).unwrap(), None);
    }
}
