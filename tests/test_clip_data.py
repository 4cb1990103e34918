"""Image-text training data: tar shards (expansion, rank x worker splitting through Paddle's DataLoader, skipping
and resumption), the Karpathy training dataset and the dispatch by spec."""
import io
import json
import os
import tarfile
from collections import Counter

import numpy as np
import paddle
import pytest
from PIL import Image

from paddlemix_eva.data.datasets import ImageTextManifest
from paddlemix_eva.data.image_text import open_image_text_data
from paddlemix_eva.data.karpathy import KarpathyImageText
from paddlemix_eva.data.shards import ImageTextShards, ShardError, expand_braces, expand_shard_spec, read_key_groups

CONTEXT = 12


def tokenize(text):
    """Token ids that spell the caption, so a batch tells which samples it holds."""
    ids = [ord(c) for c in text[:CONTEXT]]
    return np.array([ids + [0] * (CONTEXT - len(ids))], dtype=np.int64)


def text_of(ids) -> str:
    return "".join(chr(int(i)) for i in ids if i)


def transform(image, rng):
    """The pixels plus one draw of the sample's generator (so seeding shows in the output)."""
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255 + np.float32(rng.random())


def collate(batch):
    images, ids = zip(*batch)
    return np.stack(images), np.stack(ids)


def image_bytes(index: int, fmt: str = "JPEG", size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (index * 7 % 256, 40, 200)).save(out, format=fmt)
    return out.getvalue()


def write_tar(path, samples):
    """samples: [(key, {suffix: bytes})] in member order."""
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def plain_sample(key, index, fmt="JPEG"):
    return key, {"jpg" if fmt == "JPEG" else "png": image_bytes(index, fmt), "txt": key.encode()}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """3 shards of 10 samples: shard 0 has a corrupt image, shard 1 a caption-less, an empty-caption, a
    JSON-captioned and a PNG sample (and an 11th without image), shard 2 is truncated inside its 8th sample.
    Returns (pattern, good keys)."""
    root = tmp_path_factory.mktemp("shards")
    good = []
    for s in range(3):
        samples = []
        for i in range(10):
            key = f"s{s}_{i:03d}"
            key_, members = plain_sample(key, 10 * s + i, "PNG" if (s, i) == (1, 4) else "JPEG")
            if (s, i) == (0, 3):
                members["jpg"] = b"this is not an image"
            elif (s, i) == (1, 5):
                del members["txt"]
            elif (s, i) == (1, 7):
                members["txt"] = b"   "
            elif (s, i) == (1, 2):
                del members["txt"]
                members["json"] = json.dumps({"caption": key, "url": "http://x"}).encode()
            if (s, i) not in ((0, 3), (1, 5), (1, 7)) and not (s == 2 and i >= 7):
                good.append(key)
            samples.append((key_, members))
        if s == 1:
            samples.append(("s1_010", {"txt": b"s1_010"}))  # a caption without an image
        write_tar(root / f"{s:05d}.tar", samples)
    path = root / "00002.tar"
    with tarfile.open(path) as tar:
        cut = tar.getmember("s2_007.jpg").offset_data + 5
    path.write_bytes(path.read_bytes()[:cut])
    return f"{root}/{{00000..00002}}.tar", good


def load_keys(dataset, batch_size, num_workers, max_batches=None):
    """[(caption keys, images)] per batch from a real Paddle DataLoader."""
    loader = paddle.io.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    batches = []
    for images, ids in loader:
        batches.append(([text_of(row) for row in np.asarray(ids)], np.asarray(images)))
        if max_batches and len(batches) == max_batches:
            break
    return batches


# ---------------------------------------------------------------------------------------------------- shard specs
def test_brace_expansion_keeps_padding_and_lists():
    assert expand_braces("d/{00008..00011}.tar") == [f"d/{i:05d}.tar" for i in range(8, 12)]
    assert expand_braces("{9..11}") == ["9", "10", "11"]
    assert expand_braces("{3..1}") == ["3", "2", "1"]
    assert expand_braces("{a,b}/{0..1}.tar") == ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"]
    for bad in ("x/{1-3}.tar", "x/{1..3.tar", "x/1..3}.tar", "{a{b}}"):
        with pytest.raises(ValueError, match="pattern"):
            expand_braces(bad)


def test_shard_specs_patterns_lists_and_errors(tmp_path):
    for name in ("00008.tar", "00009.tar", "00010.tar", "sub/a.tar"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    pattern = f"{tmp_path}/{{00008..00010}}.tar"
    assert expand_shard_spec(pattern) == [str(tmp_path / f"{i:05d}.tar") for i in (8, 9, 10)]
    listing = tmp_path / "train.txt"
    listing.write_text(f"# training shards\nsub/a.tar\n\n{tmp_path / '00009.tar'}\n{{00008,00010}}.tar\n")
    assert expand_shard_spec(str(listing)) == [str(tmp_path / "sub/a.tar"), str(tmp_path / "00009.tar"),
                                               str(tmp_path / "00008.tar"), str(tmp_path / "00010.tar")]
    assert expand_shard_spec(str(tmp_path / "sub/a.tar")) == [str(tmp_path / "sub/a.tar")]
    assert len(expand_shard_spec(f"{pattern}::{tmp_path}/sub/a.tar")) == 4
    with pytest.raises(FileNotFoundError, match=r"1 of the 4 shards .*00011\.tar"):
        expand_shard_spec(f"{tmp_path}/{{00008..00011}}.tar")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty"):
        expand_shard_spec(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="expected a .tar"):
        expand_shard_spec(str(tmp_path / "data.parquet"))
    with pytest.raises(ValueError, match="only local files"):
        expand_shard_spec("s3://bucket/{00000..00010}.tar")


# ---------------------------------------------------------------------------------------------------- reading
def test_tar_ending_at_a_member_boundary_counts_as_truncated(tmp_path):
    path = tmp_path / "cut.tar"
    write_tar(path, [plain_sample(f"k{i}", i) for i in range(3)])
    assert [key for key, _ in read_key_groups(str(path))] == ["k0", "k1", "k2"]
    with tarfile.open(path) as tar:
        cut = tar.getmember("k2.jpg").offset  # before a header: stream-mode tarfile ends silently here
    path.write_bytes(path.read_bytes()[:cut])
    keys = []
    with pytest.raises(ShardError, match="end-of-archive") as err:
        for key, _ in read_key_groups(str(path)):
            keys.append(key)
    assert err.value.reason == "truncated_shard" and keys == ["k0"]  # k1 may be incomplete: dropped
    (tmp_path / "junk.tar").write_bytes(os.urandom(3000))
    with pytest.raises(ShardError) as err:
        list(read_key_groups(str(tmp_path / "junk.tar")))
    assert err.value.reason == "unreadable_shard"


def test_skips_are_counted_per_reason_and_the_run_goes_on(shards, tmp_path, caplog):
    pattern, good = shards
    (tmp_path / "junk.tar").write_bytes(os.urandom(3000))
    dataset = ImageTextShards(f"{pattern}::{tmp_path}/junk.tar", transform, tokenize, epochs=1)
    with caplog.at_level("INFO", logger="paddlemix_eva.data.shards"):
        samples = list(dataset)
    assert sorted(text_of(ids) for _, ids in samples) == sorted(good)
    assert samples[0][0].shape == (3, 8, 8) and samples[0][1].shape == (CONTEXT,)
    assert dataset.stats == Counter(samples=24, corrupt_image=1, no_image=1, no_caption=1, empty_caption=1,
                                    truncated_shard=1, unreadable_shard=1)
    text = caplog.text
    assert "00002.tar: skipped truncated_shard 1" in text and "junk.tar: skipped unreadable_shard 1" in text
    assert "00001.tar: skipped no_image 1, no_caption 1, empty_caption 1" in text
    assert "epoch 0: 24 usable samples" in text


@pytest.mark.parametrize("world_size, buffer", [(2, 4), (1, 0)], ids=["samples-dealt", "shards-dealt"])
def test_every_sample_once_across_ranks_and_workers(shards, world_size, buffer):
    """2 ranks x 2 workers = 4 slots > 3 shards: samples are dealt; 1 rank x 2 workers: whole shards are."""
    pattern, good = shards
    seen = []
    for rank in range(world_size):
        dataset = ImageTextShards(pattern, transform, tokenize, seed=3, rank=rank, world_size=world_size,
                                  shuffle_buffer=buffer, epochs=1)
        keys = [k for batch, _ in load_keys(dataset, batch_size=4, num_workers=2) for k in batch]
        assert keys, f"rank {rank} got nothing"
        seen += keys
    assert Counter(seen) == Counter(good)


def test_epochs_reshuffle_shards_and_reseed_augmentation(shards):
    pattern, good = shards
    dataset = ImageTextShards(pattern, transform, tokenize, seed=1, epochs=2, shuffle_buffer=6)
    samples = list(dataset)
    first, second = samples[: len(good)], samples[len(good):]
    assert Counter(text_of(i) for _, i in first) == Counter(text_of(i) for _, i in second) == Counter(good)
    assert [text_of(i) for _, i in first] != [text_of(i) for _, i in second]
    again = list(ImageTextShards(pattern, transform, tokenize, seed=1, epochs=2, shuffle_buffer=6))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(samples, again))


# ---------------------------------------------------------------------------------------------------- resuming
@pytest.mark.parametrize("world_size, rank, buffer, done, more", [(1, 0, 5, 7, 6), (2, 1, 0, 5, 4)],
                         ids=["shards-dealt-buffered", "samples-dealt"])
def test_resume_continues_with_what_an_uninterrupted_run_yields_next(shards, world_size, rank, buffer, done, more):
    """Across epoch boundaries (24 usable samples an epoch), through 2 DataLoader workers, after an odd and an even
    number of batches (a new DataLoader starts at worker 0 whichever worker's batch came next)."""
    pattern, _ = shards

    def make():
        return ImageTextShards(pattern, transform, tokenize, seed=5, rank=rank, world_size=world_size,
                               shuffle_buffer=buffer)

    straight = load_keys(make(), batch_size=3, num_workers=2, max_batches=done + 1 + more)
    for consumed in (done, done + 1):
        resumed_ds = make()
        resumed_ds.resume(consumed, batch_size=3, num_workers=2)
        resumed = load_keys(resumed_ds, batch_size=3, num_workers=2, max_batches=more)
        expected = straight[consumed : consumed + more]
        assert [keys for keys, _ in resumed] == [keys for keys, _ in expected], consumed
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(resumed, expected))  # same augmentation


def test_resume_repeats_at_most_the_images_only_decoding_finds_broken(tmp_path):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    out = io.BytesIO()
    noise.save(out, format="JPEG")
    samples = [plain_sample(f"k{i}", i) for i in range(8)]
    samples[1][1]["jpg"] = out.getvalue()[: len(out.getvalue()) * 8 // 10]  # header intact, pixel data cut short
    write_tar(tmp_path / "one.tar", samples)
    spec = str(tmp_path / "one.tar")
    straight = [k for b, _ in load_keys(ImageTextShards(spec, transform, tokenize, epochs=1), 2, 0) for k in b]
    assert straight == ["k0", "k2", "k3", "k4", "k5", "k6", "k7"]
    dataset = ImageTextShards(spec, transform, tokenize, epochs=1)
    dataset.resume(1, batch_size=2, num_workers=0)
    resumed = [k for b, _ in load_keys(dataset, 2, 0) for k in b]
    assert resumed == ["k2"] + straight[2:]  # one repeat (k2), nothing skipped
    dataset.resume(1, batch_size=2, num_workers=2)
    with pytest.raises(ValueError, match="num_workers=2 but the DataLoader runs 1"):
        next(iter(dataset))


# ---------------------------------------------------------------------------------------------------- Karpathy
def karpathy_tree(root):
    (root / "val2014").mkdir(parents=True)
    for i, name in enumerate(("a.jpg", "b.jpg")):
        (root / "val2014" / name).write_bytes(image_bytes(i))
    records = [{"image": "val2014/a.jpg", "caption": "cap a1", "image_id": "coco_1"},
               {"image": "val2014/a.jpg", "caption": "cap a2", "image_id": "coco_1"},
               {"image": "val2014/gone.jpg", "caption": "cap gone", "image_id": "coco_2"},
               {"image": "val2014/b.jpg", "caption": ["cap b1", "cap b2"], "image_id": "coco_3"}]
    path = root / "coco_karpathy_train.json"
    path.write_text(json.dumps(records))
    return path


def test_karpathy_training_set_yields_every_caption_and_substitutes_missing_images(tmp_path, caplog):
    path = karpathy_tree(tmp_path / "coco")
    dataset = KarpathyImageText(str(path), transform, tokenize, seed=2)
    assert len(dataset) == 5
    assert [text_of(dataset[i][1]) for i in (0, 1, 3, 4)] == ["cap a1", "cap a2", "cap b1", "cap b2"]
    with caplog.at_level("WARNING"):
        image, ids = dataset[2]
    assert "gone.jpg" in caplog.text and text_of(ids) == "cap b1" and image.shape == (3, 8, 8)
    assert np.array_equal(dataset[0][0], dataset[0][0])
    dataset.set_epoch(1)
    assert not np.array_equal(dataset[0][0], KarpathyImageText(str(path), transform, tokenize, seed=2)[0][0])

    moved = tmp_path / "elsewhere.json"
    moved.write_text(path.read_text())
    assert len(KarpathyImageText(str(moved), transform, tokenize, image_root=str(tmp_path / "coco"))) == 5
    with pytest.raises(FileNotFoundError, match="image_root"):
        KarpathyImageText(str(moved), transform, tokenize)


# ---------------------------------------------------------------------------------------------------- dispatch
def test_open_image_text_data_picks_the_dataset_from_the_spec(shards, tmp_path):
    pattern, _ = shards
    karpathy = karpathy_tree(tmp_path / "coco")
    assert isinstance(open_image_text_data(str(karpathy), transform, tokenize), KarpathyImageText)
    (tmp_path / "coco" / "m.jsonl").write_text(json.dumps({"image": "val2014/a.jpg", "caption": "x"}) + "\n")
    (tmp_path / "coco" / "m.csv").write_text("image,caption\nval2014/b.jpg,y\n")
    for name in ("m.jsonl", "m.csv"):
        assert isinstance(open_image_text_data(str(tmp_path / "coco" / name), transform, tokenize), ImageTextManifest)
    streamed = open_image_text_data(pattern, transform, tokenize, seed=4, rank=1, world_size=2, shuffle_buffer=3)
    assert isinstance(streamed, ImageTextShards) and (streamed.rank, streamed.world_size, streamed.seed) == (1, 2, 4)
    listing = tmp_path / "shards.txt"
    listing.write_text("\n".join(expand_shard_spec(pattern)))
    assert len(open_image_text_data(str(listing), transform, tokenize).shards) == 3
    for bad in (str(tmp_path / "train.parquet"), str(tmp_path)):
        with pytest.raises(ValueError, match="none of the supported forms"):
            open_image_text_data(bad, transform, tokenize)
    with pytest.raises(ValueError, match="image_root applies to Karpathy"):
        open_image_text_data(pattern, transform, tokenize, image_root=str(tmp_path))
