"""Ideal per-term times of one serving worker: a decode step, a prefill, and its KV capacity.

Each term is what a datasheet promises (bytes over the HBM bandwidth, FLOPs over the dense peak
of the format the GEMMs run in, bytes over the link bandwidth) or a count (iterations, running
requests, collective latency steps). ``ServingCalibration`` turns them into seconds with one
factor per term, so the model is linear in its fitted factors and the fit is a least-squares
problem over the published rows.

Sizes are per GPU of a worker of shape (tp, pp, ep, attention_dp) with n = tp * attention_dp
GPUs per stage:

- attention and dense MLP weights are split over tp and replicated per attention-DP rank; the
  routed experts are split over all n GPUs of a stage; the LM head and embedding stay in bf16.
- a decode step of b requests per attention rank reads the non-expert weights once, the local
  experts the step's tokens touch (a token picks top-k of E experts, so a step of T tokens
  touches 1 - (1 - k/E)^T of them), and every request's KV cache; its GEMMs do 2 FLOPs per
  active weight per token; attention does a few FLOPs per cached token (MLA decodes in the
  absorbed form: scores over the kv_lora_rank + rope latent), in fp8 when the cache is fp8.
- sliding-window layers (gpt-oss) hold and read at most the window's tokens per request.
- pipeline stages hold L/pp layers each; with pp micro-batches in flight a token still passes
  every layer, so a decode step costs the whole model's terms plus pp stage overheads and
  hand-offs: pipelines add KV capacity, not speed.
- collectives per layer: an all-reduce over tp after attention and after a dense MLP (or a
  tensor-parallel MoE); with attention DP or expert parallelism the MoE layer instead gathers the
  tokens of all ranks and scatters the results back (dispatch + combine; a token goes once to
  each distinct rank holding one of its top-k experts). A collective over n
  GPUs takes 1 + log2 n latency steps (tree / two-shot algorithms), 3x across the scale-out
  network, plus its bytes over the link (nccl-tests bus-bandwidth factors, ``comm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cost_models.comm import GroupLink
from cost_models.comm import group_link
from cost_models.inference_params import BackendProfile
from cost_models.inference_params import KVFormat
from cost_models.inference_params import WeightFormat
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec

TERMS: tuple[str, ...] = (
    "overhead",  # iterations (decode steps, or prefill chunks) times pipeline stages
    "layers",  # iterations times layers (kernel launches and gaps between kernels)
    "moe_layers",  # iterations times MoE layers (routing, permutation, grouped-GEMM launches)
    "requests",  # running requests per attention rank (host work per request and step)
    "weights",  # s: weight bytes / HBM bandwidth
    "kv_cache",  # s: KV bytes / HBM bandwidth
    "gemm",  # s: dense GEMM FLOPs / dense peak of the GEMM format
    "moe_gemm",  # s: routed-expert (grouped) GEMM FLOPs / the same peak
    "attention",  # s: attention FLOPs / dense bf16 peak
    "collectives",  # latency steps of the collectives and pipeline hand-offs
    "link",  # s: collective and hand-off bytes / link bandwidth (bus-bandwidth factors)
)
# Terms that grow with the tokens processed: a prompt batched into the same iterations as other
# work adds these, while it shares the iterations' launches and weight reads.
WORK_TERMS: tuple[str, ...] = ("gemm", "moe_gemm", "attention", "link")
ACT_BYTES = 2.0  # bf16 activations on the wire and in the workspace
SCALEOUT_LATENCY_STEPS = 3.0  # a latency step across the scale-out network, in NVLink steps
MAX_MEMORY_UTILIZATION = 0.95  # the largest memory share vLLM/SGLang deployments set
MIN_POOL_TOKENS = 4096  # a KV pool smaller than this is raised to the largest share
GIB = 2**30


@dataclass(frozen=True)
class WorkerShape:
    """Parallel layout of one worker (see ``search_spaces.inference_config``)."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    attention_dp: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.attention_dp

    @property
    def stage_gpus(self) -> int:
        """GPUs of one pipeline stage: the MoE layers' group."""
        return self.tp * self.attention_dp


def peak_flops(cluster: ClusterSpec, dtype: DType) -> float:
    """Dense peak FLOP/s of ``dtype``; bf16 falls back to fp16 (V100)."""
    gpu = cluster.gpu
    if gpu.supports(dtype):
        return gpu.peak_flops(dtype)
    if dtype == DType.bf16 and gpu.supports(DType.fp16):
        return gpu.peak_flops(DType.fp16)
    raise ValueError(f"{gpu.name} has no {dtype} tensor cores")


@dataclass(frozen=True)
class Worker:
    """One worker of a deployment with everything its terms need."""

    model: ModelSpec
    cluster: ClusterSpec
    shape: WorkerShape
    weights: WeightFormat
    kv: KVFormat
    profile: BackendProfile

    # -- sizes ----------------------------------------------------------------------------------

    def _layer_params(self) -> tuple[float, float]:
        """(replicated, routed) layer weights of the whole model: attention, dense MLPs, shared
        experts and routers are replicated per attention rank; routed experts are spread."""
        m = self.model
        replicated = m.num_layers * m.attention_params_per_layer()
        replicated += m.num_dense_ffn_layers * m.dense_mlp_params()
        routed = 0.0
        if m.is_moe:
            shared = m.num_shared_experts * m.expert_params() + m.hidden_size * m.num_experts
            replicated += m.num_moe_layers * shared
            routed = m.num_moe_layers * m.num_experts * m.expert_params()
        return replicated, routed

    def weight_bytes_per_gpu(self) -> float:
        """Weights on the fullest GPU: its stage's layers (ceil(L/pp)) plus, on a single stage,
        both embeddings (the first and last stages hold one each)."""
        s, m = self.shape, self.model
        replicated, routed = self._layer_params()
        layers = (replicated / s.tp + routed / s.stage_gpus) * self.weights.bytes_per_weight
        stage_share = math.ceil(m.num_layers / s.pp) / m.num_layers
        embeddings = m.embedding_params() if s.pp == 1 else m.vocab_size * m.hidden_size
        return layers * stage_share + embeddings * ACT_BYTES / s.tp

    def _kv_layer_bytes(self) -> float:
        """KV bytes one GPU stores per cached token and layer: K and V of its share of the KV
        heads (replicated when tp exceeds them), or MLA's latent, which every tensor-parallel
        rank keeps whole."""
        m = self.model
        if m.attention == "mla":
            assert m.kv_lora_rank and m.qk_rope_head_dim
            width = float(m.kv_lora_rank + m.qk_rope_head_dim)
        else:
            width = 2.0 * max(1.0, m.num_kv_heads / self.shape.tp) * m.head_dim
        return width * self.kv.bytes_per_element

    def attended(self, context: float) -> float:
        """Layer-tokens of cache one query reads with ``context`` tokens before it: every
        token in full-attention layers, at most the window in sliding-window layers."""
        m = self.model
        sliding = min(m.sliding_window_layers, m.num_layers) if m.sliding_window else 0
        return (m.num_layers - sliding) * context + sliding * min(context, m.sliding_window)

    def kv_bytes_per_token(self) -> float:
        """KV bytes one GPU stores per cached token over all layers (no window applied)."""
        return self.model.num_layers * self._kv_layer_bytes()

    def request_kv_bytes(self, context: float) -> float:
        """KV bytes a request with ``context`` cached tokens holds on a GPU of the fullest
        stage (sliding-window layers keep only the window)."""
        m = self.model
        share = math.ceil(m.num_layers / self.shape.pp) / m.num_layers
        return self._kv_layer_bytes() * self.attended(context) * share

    def activation_bytes(self) -> float:
        """Forward workspace of one chunk of ``chunk_tokens``: residual stream, norms and the
        tensor-parallel slice of the attention and MLP intermediates."""
        m = self.model
        ffn = m.ffn_hidden_size if m.num_dense_ffn_layers else 0
        if m.is_moe:
            assert m.moe_ffn_hidden_size is not None
            ffn = max(ffn, (m.experts_per_token + m.num_shared_experts) * m.moe_ffn_hidden_size)
        width = 4 * m.hidden_size + (3 * ffn + m.q_dim + 2 * m.kv_dim) / self.shape.tp
        return self.profile.chunk_tokens * width * ACT_BYTES

    def kv_pool_bytes(self) -> float:
        """Bytes per GPU left for the KV cache under the backend's memory policy."""
        p = self.profile
        total = self.cluster.gpu.memory_gib * GIB
        fixed = self.weight_bytes_per_gpu() + self.activation_bytes() + p.reserve_gib * GIB
        if p.kv_fraction_of == "free":
            return (total - fixed) * p.memory_utilization
        pool = total * p.memory_utilization - fixed
        if pool < self.request_kv_bytes(MIN_POOL_TOKENS):
            # the default share leaves no room: deployments raise it (as published recipes do
            # for large models), up to what the frameworks accept
            pool = total * MAX_MEMORY_UTILIZATION - fixed
        return pool

    def request_slots(self, input_len: int, output_len: int) -> int:
        """Requests one attention rank can hold in its KV pool at once (0 = none fits)."""
        held = input_len + (output_len if self.profile.kv_reservation == "full" else output_len / 2)
        pool = self.kv_pool_bytes()
        if pool <= 0:
            return 0
        return int(pool / self.request_kv_bytes(held))

    # -- collectives ----------------------------------------------------------------------------

    def _link(self, size: int, stride: int = 1) -> GroupLink:
        return group_link(self.cluster, size, stride)

    def _steps(self, link: GroupLink) -> float:
        """Latency steps of one collective over ``link``'s group."""
        if link.size <= 1:
            return 0.0
        hop = SCALEOUT_LATENCY_STEPS if link.crosses_domain else 1.0
        return (1.0 + math.log2(link.size)) * hop

    def _collectives(self, tokens_per_rank: float) -> tuple[float, float]:
        """(latency steps, link seconds) of one forward of ``tokens_per_rank`` tokens."""
        m, s = self.model, self.shape
        msg = tokens_per_rank * m.hidden_size * ACT_BYTES
        steps = link_s = 0.0
        if s.tp > 1:
            tp = self._link(s.tp)
            reduces = m.num_layers + m.num_dense_ffn_layers
            if m.is_moe and s.attention_dp == 1 and s.ep == 1:
                reduces += m.num_moe_layers  # a tensor-parallel MoE ends in an all-reduce
            steps += reduces * self._steps(tp)
            link_s += reduces * tp.all_reduce_s(msg)
        if m.is_moe and (s.attention_dp > 1 or s.ep > 1):
            group = self._link(s.stage_gpus)
            if s.ep > 1:  # dispatch + combine: each token to its experts' ranks and back
                ranks = s.ep * (1.0 - (1.0 - 1.0 / s.ep) ** m.experts_per_token)  # distinct
                sent = msg / s.tp * ranks
                one = group.all_to_all_s(sent)
            else:  # gather every rank's tokens for the split experts, reduce-scatter back
                gathered = msg * s.attention_dp
                one = group.all_gather_s(gathered) + group.reduce_scatter_s(gathered)
            steps += 2 * m.num_moe_layers * self._steps(group)
            link_s += m.num_moe_layers * (one if s.ep == 1 else 2 * one)
        if s.pp > 1:  # one send per stage boundary: a single latency step each
            hand_off = self._link(s.pp, s.stage_gpus)
            hop = SCALEOUT_LATENCY_STEPS if hand_off.crosses_domain else 1.0
            steps += (s.pp - 1) * hop
            link_s += (s.pp - 1) * hand_off.p2p_s(msg)
        return steps, link_s

    # -- decode and prefill terms --------------------------------------------------------------

    def _gemm_flops_per_token(self) -> tuple[float, float]:
        """(dense, routed-expert) GEMM FLOPs per token per GPU: 2 per active weight, split over
        tp (a rank's tokens' expert work spreads over all stage GPUs, i.e. tp per rank); the
        dense part holds the projections, dense MLPs, shared experts, routers and LM head."""
        m = self.model
        dense = m.num_layers * m.attention_params_per_layer()
        dense += m.num_dense_ffn_layers * m.dense_mlp_params() + m.vocab_size * m.hidden_size
        routed = 0.0
        if m.is_moe:
            dense += m.num_moe_layers * m.num_shared_experts * m.expert_params()
            routed = m.num_moe_layers * m.experts_per_token * m.expert_params()
        return 2.0 * dense / self.shape.tp, 2.0 * routed / self.shape.tp

    def _attention_flops_per_key(self, decode: bool) -> float:
        """Attention FLOPs per (query token, cached key) pair per GPU and layer."""
        m = self.model
        if m.attention == "mla":
            assert m.kv_lora_rank and m.qk_rope_head_dim and m.qk_nope_head_dim and m.v_head_dim
            if decode:  # absorbed: scores over the latent + rope, values from the latent
                width = 4 * m.kv_lora_rank + 2 * m.qk_rope_head_dim
            else:
                width = 2 * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)
        else:
            width = 4 * m.head_dim
        return m.num_attention_heads * width / self.shape.tp

    def _prefill_pairs(self, input_len: int) -> float:
        """(query, key) pairs of a causal prefill summed over layers: s^2/2 per full layer,
        s*w - w^2/2 per sliding-window layer of window w < s."""
        m, s = self.model, float(input_len)
        full = m.num_layers * s * s / 2
        sliding = min(m.sliding_window_layers, m.num_layers) if m.sliding_window else 0
        if sliding and m.sliding_window < s:
            w = float(m.sliding_window)
            full -= sliding * (s * s / 2 - (s * w - w * w / 2))
        return full

    def _decode_attention_peak(self) -> float:
        """Decode attention reads the cache in its own format: an fp8 cache is multiplied in
        fp8 where the GPU has fp8 tensor cores (FlashMLA / XQA fp8 kernels), else in bf16."""
        fp8 = self.kv.bytes_per_element <= 1.0 and self.cluster.gpu.supports(DType.fp8)
        return peak_flops(self.cluster, DType.fp8 if fp8 else DType.bf16)

    def _step_weight_bytes(self, tokens_per_stage: float) -> float:
        """Weight bytes one GPU reads per forward (summed over the pipeline's stages)."""
        m, s = self.model, self.shape
        replicated, routed = self._layer_params()
        touched = 1.0
        if m.is_moe:
            touched = 1.0 - (1.0 - m.experts_per_token / m.num_experts) ** max(tokens_per_stage, 1)
        layers = replicated / s.tp + routed / s.stage_gpus * touched
        head = m.vocab_size * m.hidden_size * ACT_BYTES / s.tp
        return layers * self.weights.bytes_per_weight + head

    def decode_terms(self, batch_per_rank: float, context_len: float) -> dict[str, float]:
        """Ideal terms of one decode step with ``batch_per_rank`` requests on every attention
        rank, each with ``context_len`` cached tokens on average."""
        s, gpu = self.shape, self.cluster.gpu
        hbm = gpu.memory_bandwidth_gb_per_s * 1e9
        stage_tokens = batch_per_rank * s.attention_dp / s.pp
        steps, link_s = self._collectives(batch_per_rank / s.pp)
        kv = batch_per_rank * self._kv_layer_bytes() * self.attended(context_len)
        gemm_peak = peak_flops(self.cluster, self.weights.gemm_dtype)
        dense, routed = self._gemm_flops_per_token()
        attended = batch_per_rank * self.attended(context_len)
        attention = attended * self._attention_flops_per_key(decode=True)
        return {
            "overhead": float(s.pp),
            "layers": float(self.model.num_layers),
            "moe_layers": float(self.model.num_moe_layers),
            "requests": batch_per_rank,
            "weights": self._step_weight_bytes(stage_tokens) / hbm,
            "kv_cache": kv / hbm,
            "gemm": batch_per_rank * dense / gemm_peak,
            "moe_gemm": batch_per_rank * routed / gemm_peak,
            "attention": attention / self._decode_attention_peak(),
            "collectives": steps * s.pp,
            "link": link_s * s.pp,
        }

    def prefill_terms(self, input_len: int) -> dict[str, float]:
        """Ideal terms of one request's prefill on one attention rank, in chunks of
        ``chunk_tokens`` (each chunk re-reads the weights; the causal attention is
        quadratic in the prompt)."""
        s, m, gpu = self.shape, self.model, self.cluster.gpu
        chunks = math.ceil(input_len / self.profile.chunk_tokens)
        chunk = input_len / chunks
        hbm = gpu.memory_bandwidth_gb_per_s * 1e9
        steps, link_s = self._collectives(chunk)
        head = 2.0 * m.vocab_size * m.hidden_size / s.tp  # logits of the last token only
        dense, routed = self._gemm_flops_per_token()
        gemm_peak = peak_flops(self.cluster, self.weights.gemm_dtype)
        attention = self._prefill_pairs(input_len) * self._attention_flops_per_key(decode=False)
        kv_write = self._kv_layer_bytes() * self.attended(input_len)
        return {
            "overhead": float(chunks * s.pp),
            "layers": float(chunks * m.num_layers),
            "moe_layers": float(chunks * m.num_moe_layers),
            "requests": 0.0,
            "weights": chunks * self._step_weight_bytes(chunk * s.attention_dp) / hbm,
            "kv_cache": kv_write / hbm,
            "gemm": (input_len * (dense - head) + head) / gemm_peak,
            "moe_gemm": input_len * routed / gemm_peak,
            "attention": attention / peak_flops(self.cluster, DType.bf16),
            "collectives": steps * chunks,
            "link": link_s * chunks,
        }


def combine(terms: dict[str, float], coefficients: dict[str, float]) -> float:
    """Real seconds of ``terms`` under calibration ``coefficients``."""
    return sum(coefficients[k] * terms[k] for k in TERMS)
