import pytest
import torch

from mix2.augment import CircularTimeShift, SpecAugment


def test_time_shift_is_a_roll_per_clip():
    spec = torch.randn(5, 1, 4, 20)
    shift = CircularTimeShift()
    shifts = shift.draw(spec, torch.Generator().manual_seed(0))
    out = shift.apply(spec, shifts)
    for b in range(5):
        torch.testing.assert_close(out[b], torch.roll(spec[b], int(shifts[b]), dims=-1))
    assert 0 <= shifts.min() and shifts.max() <= 19
    assert len(set(shifts.tolist())) > 1  # drawn per clip, not once per batch


def test_time_shift_bounds():
    shifts = CircularTimeShift(max_shift_frames=3).draw(torch.zeros(1000, 1, 2, 50))
    assert shifts.max() == 3 and shifts.min() == 0


def test_spec_augment_masks_per_clip_within_bounds():
    spec = torch.ones(64, 1, 128, 376)
    augment = SpecAugment(fill="zero")
    params = augment.draw(spec, torch.Generator().manual_seed(1))
    out = augment.apply(spec, params)
    assert params.freq_widths.max() <= 9 and params.time_widths.max() <= 29
    masked_bins = (out == 0).all(dim=3)[:, 0]  # (batch, mels): whole rows zeroed by frequency masks
    assert masked_bins.sum(dim=1).max() <= 27
    assert not torch.equal(out[0], out[1])
    assert torch.equal(augment.apply(spec, params), out)  # applying is deterministic
    inside = (params.freq_starts[0, 0], params.freq_widths[0, 0])
    if inside[1] > 0:
        assert (out[0, 0, inside[0] : inside[0] + inside[1]] == 0).all()


def test_masks_hold_each_clips_own_mean_by_default():
    spec = torch.rand(4, 1, 16, 40) + torch.arange(4.0).view(4, 1, 1, 1)  # clip b lies in [b, b + 1]
    augment = SpecAugment(freq_masks=2, max_freq_mask_bins=4, time_masks=2, max_time_mask_frames=8)
    params = augment.draw(spec, torch.Generator().manual_seed(3))
    out = augment.apply(spec, params)
    changed = out != spec
    assert changed.any()
    for b in range(4):
        torch.testing.assert_close(out[b][changed[b]], spec[b].mean().expand(int(changed[b].sum())))
        assert b <= out[b].min() and out[b].max() <= b + 1  # never a level the clip does not have
    assert torch.equal(SpecAugment(0, 9, 0, 29, fill="zero")(spec), spec)


def test_no_masks_is_identity_and_bad_arguments_are_refused():
    spec = torch.rand(2, 1, 8, 8)
    assert torch.equal(SpecAugment(0, 9, 0, 29)(spec), spec)
    with pytest.raises(ValueError, match="max_freq_mask_bins"):
        SpecAugment(max_freq_mask_bins=-1)
    with pytest.raises(ValueError, match="fill must be one of"):
        SpecAugment(fill="noise")
    with pytest.raises(ValueError, match="max_shift_frames"):
        CircularTimeShift(max_shift_frames=2.5)
