#!/usr/bin/env python3
"""Hugging Face transformers FP16 `generate` on a local checkpoint: the "vs HF FP16" figure of
`odyssey verify speed` (issue 14), measured with the same batch sizes and lengths.

For each mode and batch size: random prompt ids (fixed seed) of --prompt tokens, greedy
generation of exactly --gen tokens (EOS suppressed by min_new_tokens), timed with CUDA
synchronisation; every figure is the median of --repeats runs after --warmup runs.

  ttft_ms              prefill of the batch's prompts through the first sampled token
  decode_ms_per_step   (total - TTFT) / (gen - 1): each later token of the batch
  decode_tokens_per_s  batch / decode_ms_per_step

Both come from one `generate` call: a streamer records the moment the first generated token
reaches the host (generate calls it once with the prompt, then once per token).

Modes:
  eager   the default dynamic cache, SDPA attention
  static  cache_implementation="static": transformers compiles the decode step with
          torch.compile on its own (the first runs of each batch size compile; --warmup
          must cover them)

Prints one JSON object on stdout: {"ok": true, "rows": [...], "gpu": ..., "torch": ...,
"transformers": ..., "copy_gbps": ...}; the row fields are those of `odyssey-rt speed`'s rows
(docs/executor.md) where they apply, plus "mode". Progress goes to stderr. Needs only the
standard library, torch and transformers; never touches the network.

  python3 runtime/bench/hf_baseline.py --model /tmp/7b --batch 1,8,16,32,64 --prompt 1024 --gen 128
"""

import argparse
import json
import os
import statistics
import sys
import time

# No network: the checkpoint is a local folder, and a lookup on the Hub would hang or fail on
# the GPU machine. Set before transformers is imported, which reads them at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SEED = 1234
MODES = ("eager", "static")


def positive_list(s):
    try:
        out = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a comma-separated list of integers")
    if not out or any(v < 1 for v in out):
        raise argparse.ArgumentTypeError(f"{s!r}: want positive integers")
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"{s!r} lists a value twice")
    return out


def mode_list(s):
    out = [m.strip() for m in s.split(",") if m.strip()]
    bad = [m for m in out if m not in MODES]
    if not out or bad:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {bad or s!r}; want some of {','.join(MODES)}")
    return out


def positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer")
    if v < 1:
        raise argparse.ArgumentTypeError(f"{s!r}: want at least 1")
    return v


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Output: one JSON object on stdout (see the module docstring); progress on stderr.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="a local Hugging Face checkpoint folder (config.json + safetensors)")
    p.add_argument("--batch", type=positive_list, default=[1, 8, 16, 32, 64], help="batch sizes (default 1,8,16,32,64)")
    p.add_argument("--prompt", type=positive_int, default=1024, help="prompt tokens per sequence (default 1024)")
    p.add_argument("--gen", type=positive_int, default=128, help="generated tokens per sequence, at least 2 (default 128)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs per figure, median reported (default 5)")
    p.add_argument("--warmup", type=positive_int, default=2, help="untimed runs first, per mode and batch size (default 2; "
                   "static mode compiles in them)")
    p.add_argument("--modes", type=mode_list, default=list(MODES), help="eager, static or both (default eager,static)")
    p.add_argument("--out", help="also write the JSON to this file")
    a = p.parse_args(argv)
    if a.gen < 2:
        p.error("--gen must be at least 2: decode speed is measured on the tokens after the first")
    if not os.path.isfile(os.path.join(a.model, "config.json")):
        p.error(f"--model {a.model}: no config.json there (want a local Hugging Face checkpoint folder)")
    return a


def log(msg):
    print(f"hf_baseline: {msg}", file=sys.stderr, flush=True)


def main(argv):
    a = parse_args(argv)
    try:
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError as e:
        raise SystemExit(f"hf_baseline: needs PyTorch and transformers ({e}); run it on the GPU machine")

    if not torch.cuda.is_available():
        raise SystemExit("hf_baseline: no CUDA device visible to torch")
    dev = torch.device("cuda")
    cfg = AutoConfig.from_pretrained(a.model, local_files_only=True)
    max_pos = getattr(cfg, "max_position_embeddings", None)
    if max_pos and a.prompt + a.gen > max_pos:
        log(f"note: prompt + gen = {a.prompt + a.gen} exceeds max_position_embeddings {max_pos}; timed anyway")

    # transformers 5 names the argument dtype; 4.x torch_dtype (and warns or fails on dtype
    # before 4.56).
    major = int(transformers.__version__.split(".")[0])
    dtype_kw = {"dtype": torch.float16} if major >= 5 else {"torch_dtype": torch.float16}
    log(f"loading {a.model} in fp16 (torch {torch.__version__}, transformers {transformers.__version__})")
    model = AutoModelForCausalLM.from_pretrained(a.model, local_files_only=True, attn_implementation="sdpa", **dtype_kw)
    model.to(dev).eval()

    try:
        from transformers.generation.streamers import BaseStreamer
    except ImportError:  # the interface is two methods; generate only calls them
        BaseStreamer = object

    class FirstToken(BaseStreamer):
        """Records when the first generated token reaches the host: generate puts the prompt
        ([batch, prompt]) first, then each new token ([batch]), as a .cpu() copy, so the GPU
        work before it is done. The prompt is recognised by its shape, not by counting, in
        case a version of generate stops putting it."""

        def __init__(self):
            self.saw_prompt = False
            self.first = None

        def put(self, value):
            if self.first is not None:
                return
            if not self.saw_prompt and value.dim() == 2 and value.shape[-1] == a.prompt:
                self.saw_prompt = True
                return
            torch.cuda.synchronize()
            self.first = time.perf_counter()

        def end(self):
            pass

    vocab = cfg.vocab_size
    # Greedy; min_new_tokens keeps EOS from ending a sequence early (random weights and random
    # prompts make it as likely as any token).
    gen_cfg = dict(max_new_tokens=a.gen, min_new_tokens=a.gen, do_sample=False, num_beams=1,
                   pad_token_id=getattr(cfg, "pad_token_id", None) or 0)

    def run_once(ids, mask, mode):
        streamer = FirstToken()
        kw = dict(gen_cfg)
        if mode == "static":
            kw["cache_implementation"] = "static"
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, streamer=streamer, **kw)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        new = out.shape[1] - ids.shape[1]
        if new != a.gen:
            raise SystemExit(f"hf_baseline: generate made {new} tokens, not {a.gen} (EOS not suppressed?)")
        if streamer.first is None:
            raise SystemExit("hf_baseline: the streamer never saw the first token (transformers changed how generate streams)")
        ttft = (streamer.first - t0) * 1e3
        return ttft, ((t1 - t0) * 1e3 - ttft) / (a.gen - 1)

    # Bytes a decode step must read, for the memory floor as odyssey-rt speed computes it: the
    # weights the step uses (the embedding table only when it is also the LM head) and the
    # KV cache at the mean context.
    weight_bytes = 0
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == emb.data_ptr()
    for name, prm in model.named_parameters():
        if prm.data_ptr() == emb.data_ptr() and not tied:
            continue
        weight_bytes += prm.numel() * prm.element_size()
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_bytes_per_token = 2 * cfg.num_hidden_layers * kv_heads * head_dim * 2  # K and V, fp16

    # Device-to-device copy of 1 GiB, read + write, median of 20: odyssey-rt's copy_gbps.
    src = torch.empty(1 << 30, dtype=torch.uint8, device=dev).fill_(1)
    dst = torch.empty_like(src)
    times = []
    for i in range(25):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        dst.copy_(src)
        e.record()
        e.synchronize()
        if i >= 5:
            times.append(s.elapsed_time(e))
    copy_gbps = 2 * (1 << 30) / (statistics.median(times) * 1e-3) / 1e9
    del src, dst
    torch.cuda.empty_cache()

    gen = torch.Generator(device="cpu").manual_seed(SEED)
    rows = []
    total = len(a.modes) * len(a.batch) * (a.warmup + a.repeats)
    done = 0
    for mode in a.modes:
        for b in a.batch:
            ids = torch.randint(0, vocab, (b, a.prompt), generator=gen).to(dev)
            mask = torch.ones_like(ids)
            torch.cuda.reset_peak_memory_stats()
            ttfts, steps = [], []
            done_before = done
            try:
                for i in range(a.warmup + a.repeats):
                    t, s = run_once(ids, mask, mode)
                    if i >= a.warmup:
                        ttfts.append(t)
                        steps.append(s)
                    done += 1
                    print(f"progress {done} {total}", file=sys.stderr, flush=True)
            except torch.cuda.OutOfMemoryError as e:
                log(f"{mode} batch {b}: out of GPU memory ({str(e).splitlines()[0]}); row skipped")
                rows.append({"model": a.model, "path": f"hf-fp16-{mode}", "mode": mode, "batch": b, "prompt": a.prompt,
                             "gen": a.gen, "error": "out of GPU memory"})
                done = done_before + a.warmup + a.repeats
                print(f"progress {done} {total}", file=sys.stderr, flush=True)
                torch.cuda.empty_cache()
                continue
            ttft = statistics.median(ttfts)
            step = statistics.median(steps)
            floor = (weight_bytes + kv_bytes_per_token * b * (a.prompt + a.gen / 2)) / (copy_gbps * 1e9) * 1e3
            row = {"model": a.model, "path": f"hf-fp16-{mode}", "mode": mode, "batch": b, "prompt": a.prompt, "gen": a.gen,
                   "ttft_ms": ttft, "ttft_ms_all": ttfts, "decode_tokens_per_s": b / step * 1e3,
                   "decode_ms_per_step": step, "decode_ms_per_step_all": steps, "weight_bytes": weight_bytes,
                   "kv_bytes_per_token": kv_bytes_per_token, "memory_floor_ms_per_step": floor,
                   "fraction_of_floor": floor / step, "gpu_memory_bytes": torch.cuda.max_memory_allocated()}
            rows.append(row)
            log(f"{mode} batch {b}: TTFT {ttft:.1f} ms, decode {row['decode_tokens_per_s']:.1f} tok/s "
                f"({100 * row['fraction_of_floor']:.0f}% of the floor)")
    props = torch.cuda.get_device_properties(dev)
    res = {
        "ok": True,
        "model": a.model,
        "seed": SEED,
        "warmup": a.warmup,
        "repeats": a.repeats,
        "gpu": {"name": props.name, "cc": f"{props.major}.{props.minor}", "memory_bytes": props.total_memory},
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attn_implementation": "sdpa",
        "copy_gbps": copy_gbps,
        "rows": rows,
    }
    text = json.dumps(res, indent=2)
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, a.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
