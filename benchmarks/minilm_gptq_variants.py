"""What was tried to bring MiniLM's int4 g128 GPTQ to 0.99 output cosine (README, "End to end").

Every variant quantizes the 36 linear layers with GPTQ int4 asymmetric, act-order, MSE scales
(damp 0.01 unless said) and prints the mean / min cosine of the mean-pooled embeddings against
the float model on the 64 held-out sentences of ``calibration_minilm.py``.

    PYTHONPATH=python python benchmarks/minilm_gptq_variants.py independent TOKENS base,refit,awqgptq,damp0.1
    PYTHONPATH=python python benchmarks/minilm_gptq_variants.py sequential TOKENS seq,gptaq [GROUP]

independent (statistics of the float model):
  base      GPTQ as in the README's best g128 row
  refit     then each group's scale refitted by least squares on the Hessian-weighted output error
            (integers and zero points fixed)
  awqgptq   AWQ then GPTQ: s = mean|x|^α (α on a 20-point grid), GPTQ of W·s on diag(1/s) H diag(1/s),
            α chosen for the least output error of Q(W·s)/s
  damp0.1   damp 0.1
sequential (each layer's inputs through the layers quantized so far):
  seq       GPTQ on the quantized model's inputs X̃
  gptaq     GPTAQ-style asymmetric target: GPTQ of W' = W XᵀX̃ (X̃ᵀX̃ + λI)⁻¹ on X̃, so the quantized
            layer on X̃ approximates the float layer on the float model's inputs X
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibration_minilm as cm  # noqa: E402

import swiftprune as sp  # noqa: E402
from swiftprune.activation_scaling import output_error  # noqa: E402
from swiftprune.calibration import HessianAccumulator  # noqa: E402

kind, tokens, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
group = int(sys.argv[4]) if len(sys.argv) > 4 else 128
model = cm.find_model(None)
tok = cm.WordPiece(model / "vocab.txt")
weights = {k: np.asarray(v, np.float32) for k, v in sp.load_weights(model / "model.safetensors").items()
           if k != "embeddings.position_ids"}
design = cm.ROOT.parent.parent / "shared" / "DESIGN.md"
ev_text = cm.sentences_of((cm.ROOT / "README.md").read_text()) + (cm.sentences_of(design.read_text()) if design.exists() else [])
calib = cm.calibration_corpus(tok, model, tokens)
evaluation = [tok.encode(s) for s in ev_text[:64]]
print("calibration tokens", sum(len(c) for c in calib), flush=True)
ref = cm.embeddings(weights, evaluation)

if kind == "independent":
    src = cm.MiniLMCalibration(weights, calib, "independent")
    stats = {n: src.statistics(n) for n in cm.LINEAR_WEIGHTS}

    def refit_scales(w, q, h):
        """least squares per row over group scales with fixed integers and zero points"""
        out, inn = w.shape
        g = q.group_size
        G = inn // g
        qq = (q.values.astype(np.float64) - np.repeat(q.zero_point.astype(np.float64), g, axis=1))  # (out,in)
        # A_r: in x G, A_r[j, gi] = qq[r,j] if j in gi
        A = np.zeros((out, inn, G))
        for gi in range(G):
            A[:, gi*g:(gi+1)*g, gi] = qq[:, gi*g:(gi+1)*g]
        HA = np.einsum("jk,rkg->rjg", h, A)
        M = np.einsum("rjg,rjh->rgh", A, HA)
        b = np.einsum("rjg,rj->rg", HA, w.astype(np.float64))
        M += 1e-9 * np.eye(G) * np.trace(M, axis1=1, axis2=2)[:, None, None]
        s = np.linalg.solve(M, b[..., None])[..., 0]
        s = np.where(s > 0, s, q.scale)
        return (qq * np.repeat(s, g, axis=1)).astype(np.float32)

    def quant(name, v):
        w = weights[name]; st = stats[name]; h = st.hessian_
        kw = dict(symmetric=False, act_order=True, mse=True)
        damp = 0.1 if "damp0.1" in v else 0.01
        if v.startswith("awqgptq"):
            mean_abs = st.abs_sum_ / st.count_
            best = None
            for k in range(20):
                a = k / 20
                s = np.maximum(mean_abs ** a, 1e-4); s = s / np.sqrt(s.max() * s.min())
                hs = h / s[:, None] / s[None, :]
                acc = sp.calibration.HessianAccumulator(w.shape[1]); acc._hessian = hs.copy(); acc.count_ = st.count_
                q = sp.gptq(w * s[None, :], acc, 4, group, damp, **kw)
                wh = q.dequantize() / s[None, :]
                e = output_error(wh - w, h)
                if best is None or e < best[0]: best = (e, a, wh)
            return best[2]
        q = sp.gptq(w, st, 4, group, damp, **kw)
        if "refit" in v:
            return refit_scales(w, q, h)
        return q.dequantize()

    for v in variants:
        t = time.process_time()
        out = dict(weights)
        rel = []
        for n in cm.LINEAR_WEIGHTS:
            out[n] = quant(n, v)
            h = stats[n].hessian_
            rel.append(np.sqrt(output_error(out[n] - weights[n], h) / output_error(weights[n], h)))
        cos = (cm.embeddings(out, evaluation) * ref).sum(1)
        print(f"{v:20s} tokens {tokens} cos {cos.mean():.5f} min {cos.min():.5f} mean rel err {np.mean(rel):.4f} ({time.process_time()-t:.1f}s cpu)", flush=True)
else:
    GROUPS = [(l, names) for l in range(6) for names in (["attention.self.query", "attention.self.key", "attention.self.value"], ["attention.output.dense"], ["intermediate.dense"], ["output.dense"])]

    def capture_pair(current, layer, name, both):
        feats = weights[name].shape[1]
        H = np.zeros((feats, feats)); C = np.zeros((feats, feats)) if both else None; n = 0
        for _, batch in cm.batches(calib):
            got = {}
            cm.encode(current, batch, lambda nm, x: got.__setitem__(nm, x) if nm == name else None, stop_after=layer)
            xt = got[name].astype(np.float32)
            H += (xt.T @ xt).astype(np.float64); n += len(xt)
            if both:
                got2 = {}
                cm.encode(weights, batch, lambda nm, x: got2.__setitem__(nm, x) if nm == name else None, stop_after=layer)
                x = got2[name].astype(np.float32)
                C += (x.T @ xt).astype(np.float64)
        return H, C, n

    def acc_of(H, n, feats):
        a = HessianAccumulator(feats); a._hessian[...] = H; a.count_ = n; return a

    for v in variants:
        t = time.process_time()
        current = dict(weights)
        for layer, suffixes in GROUPS:
            names = [f"encoder.layer.{layer}.{s}.weight" for s in suffixes]
            both = v.startswith("gptaq")
            H, C, n = capture_pair(current, layer, names[0], both)
            feats = H.shape[0]
            for name in names:
                w = weights[name].astype(np.float64)
                if both:
                    lam = float(v.split("_")[1]) if "_" in v else 0.01
                    Hd = H + lam * np.mean(np.diag(H)) * np.eye(feats)
                    target = np.linalg.solve(Hd, (w @ C).T).T  # W C H~^-1  (H symmetric)
                else:
                    target = w
                q = sp.gptq(target.astype(np.float32), acc_of(H, n, feats), 4, group, 0.01, symmetric=False, act_order=True, mse=True)
                current[name] = q.dequantize()
        cos = (cm.embeddings(current, evaluation) * ref).sum(1)
        print(f"{v:14s} g{group} tokens {tokens} cos {cos.mean():.5f} min {cos.min():.5f} ({time.process_time()-t:.0f}s cpu)", flush=True)
