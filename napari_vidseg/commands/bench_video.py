"""`napari-vidseg bench-video [VIDEO] [--make-long MINUTES]`: lazy reading vs raw ffmpeg.

Prints time-to-first-frame (open + frame 0), random-access latency (median of
20 random frames on a fresh source, so each is a cache miss), sequential frames
per second over the whole video (`iter_chunks`), peak RSS while scanning every
frame, propagation's two ways of reading (8 frames at a time in order through
the chunk cache, `frames`; every 4th frame, two at a time, `frames_at`) over
the first `--reads` frames, and raw ffmpeg decoding speed of the same file (ffmpeg decoding to rgb24
into the null muxer: the physical limit) with our sequential speed as a ratio.
The last line is one JSON object.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np


def configure(parser) -> None:
    parser.add_argument("video", nargs="?", type=Path, help="video to read; default: generate one")
    parser.add_argument("--make-long", type=float, default=2.0, metavar="MINUTES",
                        help="length of the generated 1080p test video (default 2 minutes)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of the generated video")
    parser.add_argument("--size", default="1920x1080", help="WxH of the generated video")
    parser.add_argument("--out-dir", type=Path, default=Path("bench-video"), help="where the generated video goes")
    parser.add_argument("--random", type=int, default=20, help="number of random frames to time")
    parser.add_argument("--chunk-frames", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reads", type=int, default=600, help="frames read the ways propagation reads them")


def make_long_video(path: Path, minutes: float, fps: float, width: int, height: int) -> Path:
    """Cheap moving content (ffmpeg's testsrc2 pattern), x264 ultrafast; made by ffmpeg itself."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
           "-i", f"testsrc2=size={width}x{height}:rate={fps}", "-t", f"{minutes * 60:.3f}",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", str(int(fps * 2)), "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def raw_ffmpeg_fps(path: Path, n_frames: int, muxer: str = "null") -> float:
    """ffmpeg decoding every frame to rgb24 (as we ask it to), into the null muxer ("null": decoding
    only) or as raw video bytes into /dev/null ("rawvideo": decoding plus handing the bytes over)."""
    import imageio_ffmpeg

    t0 = time.perf_counter()
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path),
                    "-map", "0:v:0", "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", muxer, "-"],
                   check=True, stdout=subprocess.DEVNULL)
    return n_frames / (time.perf_counter() - t0)


def propagation_reads(path: Path, chunk_frames: int, n: int) -> tuple[float, float]:
    """Milliseconds a frame for the reads propagation makes over frames 0..n-1, each on a fresh
    source: blocks of 8 in order through the chunk cache (a dense pass), and blocks of two frames
    4 apart with `frames_at` (self-training's first pass; per frame read)."""
    from ..io.video import VideoSource

    src = VideoSource.open(path, chunk_frames=chunk_frames)
    t0 = time.perf_counter()
    for t in range(0, n, 8):
        src.frames(t, min(t + 8, n))
    in_order = (time.perf_counter() - t0) * 1000 / max(n, 1)
    src = VideoSource.open(path, chunk_frames=chunk_frames)
    wanted = list(range(0, n, 4))
    t0 = time.perf_counter()
    for i in range(0, len(wanted), 2):
        src.frames_at(wanted[i:i + 2])
    sparse = (time.perf_counter() - t0) * 1000 / max(len(wanted), 1)
    return in_order, sparse


def run(args) -> int:
    from ..io.video import VideoSource

    path = args.video
    if path is None:
        w, h = (int(v) for v in args.size.lower().split("x"))
        path = args.out_dir / f"long_{w}x{h}_{args.make_long:g}min.mp4"
        if not path.exists():
            print(f"generating {path} ({args.make_long:g} min at {args.fps:g} fps) ...", flush=True)
            t0 = time.perf_counter()
            make_long_video(path, args.make_long, args.fps, w, h)
            print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)

    rss_before = _peak_rss_mb()
    t0 = time.perf_counter()
    src = VideoSource.open(path, chunk_frames=args.chunk_frames)
    t_open = time.perf_counter() - t0
    src.frame(0)
    t_first = time.perf_counter() - t0
    print(f"{src}: open {t_open * 1000:.0f} ms, open + first frame {t_first * 1000:.0f} ms", flush=True)

    rng = np.random.default_rng(args.seed)
    lat = []
    fresh = VideoSource.open(path, chunk_frames=args.chunk_frames)
    for t in rng.choice(src.n_frames, size=min(args.random, src.n_frames), replace=False):
        fresh.clear_cache()
        t1 = time.perf_counter()
        fresh.frame(int(t))
        lat.append(time.perf_counter() - t1)
    print(f"random access: median {statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms "
          f"over {len(lat)} frames", flush=True)

    t1 = time.perf_counter()
    n = 0
    checksum = 0
    for _, block in src.iter_chunks():
        n += len(block)
        checksum ^= int(block[:, ::97, ::97].sum())  # touch the data so nothing is skipped
    t_seq = time.perf_counter() - t1
    seq_fps = n / t_seq
    peak = _peak_rss_mb()
    print(f"sequential: {n} frames in {t_seq:.1f} s = {seq_fps:.1f} fps; peak RSS {peak:.0f} MB", flush=True)

    ms_in_order, ms_every_4th = propagation_reads(path, args.chunk_frames, min(args.reads, src.n_frames))
    print(f"propagation's reads: in order {ms_in_order:.1f} ms a frame; every 4th frame {ms_every_4th:.1f} ms a "
          f"frame read", flush=True)

    raw = raw_ffmpeg_fps(path, src.n_frames)
    raw_bytes = raw_ffmpeg_fps(path, src.n_frames, "rawvideo")
    print(f"raw ffmpeg decode (rgb24 -> null): {raw:.1f} fps; ours / raw = {seq_fps / raw:.2f}", flush=True)
    print(f"raw ffmpeg decode (rgb24 bytes -> /dev/null): {raw_bytes:.1f} fps; ours / that = "
          f"{seq_fps / raw_bytes:.2f}", flush=True)
    result = {
        "video": str(path), "frames": src.n_frames, "width": src.width, "height": src.height, "fps": src.fps,
        "open_ms": round(t_open * 1000, 1), "time_to_first_frame_ms": round(t_first * 1000, 1),
        "random_access_median_ms": round(statistics.median(lat) * 1000, 1),
        "random_access_max_ms": round(max(lat) * 1000, 1),
        "in_order_ms_per_frame": round(ms_in_order, 2), "every_4th_ms_per_frame_read": round(ms_every_4th, 2),
        "sequential_fps": round(seq_fps, 1), "raw_ffmpeg_fps": round(raw, 1),
        "ratio_to_raw": round(seq_fps / raw, 3), "raw_ffmpeg_rawvideo_fps": round(raw_bytes, 1),
        "ratio_to_raw_rawvideo": round(seq_fps / raw_bytes, 3), "load_average": list(os.getloadavg()), "peak_rss_mb": round(peak, 1),
        "rss_before_mb": round(rss_before, 1), "chunk_frames": args.chunk_frames,
        "cache_chunks": src.cache_chunks, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(json.dumps(result))
    return 0
