"""ResumableSampler: order from (seed, epoch), starting mid-epoch, sharding equals a bigger batch."""

import pytest

from videoattn.engine.sampler import ResumableSampler


def test_order_depends_only_on_seed_and_epoch():
    a, b = ResumableSampler(50, seed=3), ResumableSampler(50, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    assert sorted(a) == list(range(50))


def test_start_skips_exactly_the_consumed_prefix():
    sampler = ResumableSampler(40, seed=1)
    sampler.set_epoch(5)
    full = list(sampler)
    sampler.set_start(12)
    assert list(sampler) == full[12:]
    assert len(sampler) == 28


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_batches_union_equals_single_process_global_batch(world):
    per_rank_batch = 2
    single = ResumableSampler(25, seed=7)
    single.set_epoch(1)
    single_order = list(single)
    shards = []
    for rank in range(world):
        sampler = ResumableSampler(25, seed=7, num_replicas=world, rank=rank)
        sampler.set_epoch(1)
        shards.append(list(sampler))
    assert len({len(s) for s in shards}) == 1
    global_batch = per_rank_batch * world
    for i in range(len(shards[0]) // per_rank_batch):
        together = sorted(x for shard in shards for x in shard[i * per_rank_batch:(i + 1) * per_rank_batch])
        assert together == sorted(single_order[i * global_batch:(i + 1) * global_batch])


def test_eval_sharding_covers_every_index_once():
    shards = [list(ResumableSampler(11, shuffle=False, num_replicas=3, rank=r, drop_last=False))
              for r in range(3)]
    assert sorted(x for s in shards for x in s) == list(range(11))


def test_bad_arguments():
    with pytest.raises(ValueError):
        ResumableSampler(0)
    with pytest.raises(ValueError):
        ResumableSampler(5, num_replicas=2, rank=2)
