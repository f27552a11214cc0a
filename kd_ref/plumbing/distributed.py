"""Several processes through torchrun: one per GPU (NCCL) or per CPU worker (gloo).

    torchrun --nproc_per_node=4 run.py --task rte --teacher weights/bert-base

Division of labour (the same in every file that calls these helpers):
- data: every rank builds the same global batches and keeps its slice of the
  rows of each (kd_ref.data.batching, shard=(rank, world)); --batch-size is global;
- losses: every rank divides its sums by the global batch's count of valid rows
  (real tokens), summed over ranks once per step (kd_ref.losses.counts), so its
  loss is its share of the global mean. Ranks hold unequal numbers of real
  tokens, and a bucket's partial last batch leaves the last ranks few or no
  valid rows; every example still weighs what it weighs in one process;
- gradients: DistributedDataParallel sums them over ranks (not its default
  average), so they add up to the one-process gradient of the global batch;
- sums that decide something (the KSM state, the reward's gold loss, dev logits)
  are summed over ranks with all_reduce, so every rank sees global values;
- the agent acts on rank 0 and its action is broadcast; only rank 0 writes files.
In a single process (no torchrun) every helper here is a no-op.
"""
import os

import torch
import torch.distributed as dist


def setup(device: torch.device) -> torch.device:
    """Join the torchrun group when launched by torchrun; returns this rank's device."""
    if "RANK" not in os.environ or dist.is_initialized():
        return device
    if device.type != "cuda":
        dist.init_process_group("gloo")
        return device
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", device_id=device)
    return device


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def shard() -> tuple[int, int]:
    return rank(), world()


def sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (and returned)."""
    if world() > 1:
        dist.all_reduce(tensor)
    return tensor


def from_main(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's value on every rank, in place (and returned)."""
    if world() > 1:
        dist.broadcast(tensor, 0)
    return tensor


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def wrap(module: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel over ranks, gradients summed in backward; the module itself alone.
    Its loss must be a share of the global batch's loss (global counts, module docstring)."""
    if world() == 1:
        return module
    ddp = torch.nn.parallel.DistributedDataParallel(module)
    ddp.register_comm_hook(None, _sum_gradients)
    return ddp


def _sum_gradients(_, bucket):
    """DDP's default all-reduce hook (ddp_comm_hooks.default_hooks.allreduce_hook) without its
    division by the world size."""
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda fut: fut.value()[0])


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
