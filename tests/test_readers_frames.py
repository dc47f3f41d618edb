"""The frames reader on real files as people write them (docs/formats.md, "Frames"), and the time-lapse label
writer: rotated phone videos, TIFF time-lapses written page by page / OME / ImageJ, blank frames, a run that
stops part-way, NIfTI / NRRD / MHA outputs. Files are made with the libraries that write them in the wild
(PyAV, tifffile, Pillow); the realworld cases T1, T3, T4 and T6 are tests here with their values."""

from __future__ import annotations

import av
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.imaging.tracking.export import TIME_AXIS_NOTE, write_label_stack, write_session_labels
from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker

QUICK = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))


def moving_ellipse(frames: int = 4, side: int = 96, step=(8, 2), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint16 (T, side, side) frames of a bright ellipse moving ``step`` (x, y) px per frame, and its masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    truth = np.array(
        [((xx - (30 + step[0] * t)) / 13.0) ** 2 + ((yy - (44 + step[1] * t)) / 10.0) ** 2 <= 1 for t in range(frames)]
    )
    stack = np.clip(rng.normal(400, 40, truth.shape) + 2500 * truth, 0, 65535).astype(np.uint16)
    return stack, truth


def track(path, out, box=(15, 32, 45, 56), *extra) -> int:
    """``fmscope track`` in process (loads LiteMedSAM: used where the command's own behaviour is checked)."""
    return main(["track", str(path), "--frame", "0", "--box", *map(str, box), "-o", str(out), *map(str, extra)])


def tracked(path, out, segmenter, box=(15, 32, 45, 56)) -> str | None:
    """What ``fmscope track PATH --frame 0 --box BOX -o OUT`` does (the reader, a LiteMedSAM session,
    the label writer), with the session's shared segmenter; returns the writer's note."""
    frames = open_frames(path)
    session = TrackingSession(frames, backend=LiteMedSAMTracker(frames, segmenter=segmenter))
    session.add_box(0, 1, box)
    for _ in session.propagate("both"):
        pass
    return write_session_labels(session, out)


def rotated_video(path, rotation: float, shown: np.ndarray) -> np.ndarray:
    """An mp4 whose stored frames are ``shown`` (T, H, W) turned so that players, applying the display
    rotation ``rotation`` (degrees, counter-clockwise as ffmpeg's display matrix), show ``shown``."""
    turns = int(round(rotation / 90)) % 4
    stored = np.stack([np.rot90(frame, -turns) for frame in shown])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = stored.shape[2], stored.shape[1], "yuv420p"
        stream.options = {"crf": "0"}
        stream.set_display_rotation(rotation)
        for frame in stored:
            rgb = np.ascontiguousarray(np.repeat(frame[..., None], 3, axis=-1))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return stored


def test_rotated_phone_video_is_tracked_as_players_show_it(tmp_path, segmenter):
    """case_T1: stored 128 x 64 with a -90 degree display matrix; the box is read off the displayed video."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :64]
    truth = np.array([((xx - 24) / 12.0) ** 2 + ((yy - (30 + 6 * t)) / 10.0) ** 2 <= 1 for t in range(4)])
    shown = np.clip(rng.normal(40, 6, truth.shape) + 170 * truth, 0, 255).astype(np.uint8)
    rotated_video(tmp_path / "rot.mp4", -90, shown)
    tracked(tmp_path / "rot.mp4", tmp_path / "labels.tif", segmenter, (10, 18, 38, 42))
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == (4, 128, 64)
    assert min(dice(labels[t] > 0, truth[t]) for t in range(4)) >= 0.8


@QUICK
@given(rotation=st.sampled_from([0, 90, 180, 270, -90, -180, -270]))
def test_video_rotation_any_quarter_turn_reads_the_displayed_frames(tmp_path_factory, rotation):
    """Every quarter turn, positive or negative: the frames read are the frames players show."""
    shown = np.zeros((3, 16, 32), np.uint8)
    shown[:, :6, :6] = 255  # a corner mark: any wrong turn moves it
    shown[:, 10:, 20:26] = 128
    path = tmp_path_factory.mktemp("rotation") / "clip.mp4"
    rotated_video(path, rotation, shown)
    frames = open_frames(path)
    assert frames.shape == (16, 32)
    for t in range(3):
        assert np.abs(frames[t][..., 0].astype(int) - shown[t]).max() < 40
    assert bool(frames.notes) == (rotation % 360 != 0)


def test_video_rotation_that_is_not_a_quarter_turn_is_refused_by_name(tmp_path):
    rotated_video(tmp_path / "tilted.mp4", 45, np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(FmscopeError, match="display rotation of 45 degrees"):
        open_frames(tmp_path / "tilted.mp4")


def test_tiff_timelapse_layouts(tmp_path, capsys, segmenter):
    """case_T3: one imwrite call, frame-by-frame appends, and OME TCYX (channel refused, or chosen)."""
    stack, truth = moving_ellipse()
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    for frame in stack:
        tifffile.imwrite(tmp_path / "append.tif", frame, append=True)
    assert np.array_equal(np.stack(list(open_frames(tmp_path / "stack.tif"))), stack)
    appended = open_frames(tmp_path / "append.tif")
    assert np.array_equal(np.stack(list(appended)), stack) and "page by page" in appended.notes[0]
    tracked(tmp_path / "append.tif", tmp_path / "labels_b.tif", segmenter)
    labels = tifffile.imread(tmp_path / "labels_b.tif")
    assert labels.shape == (4, 96, 96) and min(dice(labels[t] > 0, truth[t]) for t in range(4)) >= 0.85
    ome = tmp_path / "tcyx.ome.tif"
    tifffile.imwrite(ome, np.stack([stack, stack // 4], axis=1), metadata={"axes": "TCYX"})
    capsys.readouterr()
    assert track(ome, tmp_path / "labels_c.tif") == 1
    message = capsys.readouterr().err
    assert "2 channels (C)" in message and "TCYX" in message and "--channel" in message
    assert not (tmp_path / "labels_c.tif").exists()
    assert np.array_equal(np.stack(list(open_frames(ome, channel=1))), stack // 4)


AXES_ORDERS = ["TCYX", "CTYX", "ZCYX", "CZYX", "TYX", "ZYX", "CYXT"]  # OME needs YX last: CYXT shaped only


@QUICK
@given(
    axes=st.sampled_from(AXES_ORDERS),
    channels=st.integers(1, 3),
    dtype=st.sampled_from(["uint8", "uint16", "float32"]),
    ome=st.booleans(),
)
def test_tiff_axes_in_any_order_read_the_same_frames_or_refuse_the_channel(
    tmp_path_factory, axes, channels, dtype, ome
):
    """OME / shaped TIFFs with T, Z, C in any order: the frames read are the data's frames (channel
    chosen), a channel axis is never taken for time, and without --channel several channels are refused."""
    assume(not (ome and not axes.endswith("YX")))
    rng = np.random.default_rng(len(axes) + channels)
    frames = (rng.random((3, 12, 10)) * 200).astype(dtype)  # (frame, Y, X)
    data = {"C": channels, "T": 3, "Z": 3, "Y": 12, "X": 10}
    full = np.stack([frames * (c + 1) for c in range(channels)], axis=0).astype(dtype)  # (C, F, Y, X)
    frame_axis = "T" if "T" in axes else "Z"
    source = "C" + frame_axis + "YX"
    array = np.transpose(full, [source.index(a) for a in axes if a in source]) if "C" in axes else frames
    path = tmp_path_factory.mktemp("axes") / ("stack.ome.tif" if ome else "stack.tif")
    tifffile.imwrite(path, array, metadata={"axes": axes if "C" in axes else axes.replace("C", "")})
    assert array.shape == tuple(data[a] for a in (axes if "C" in axes else axes.replace("C", "")))
    if "C" in axes and channels > 1:
        with pytest.raises(FmscopeError, match=rf"{channels} channels \(C\)"):
            open_frames(path)
        read = open_frames(path, channel=channels - 1)
        expected = full[channels - 1]
    else:
        read = open_frames(path)
        expected = full[0]
    assert read.kind == ("volume" if frame_axis == "Z" else "stack")
    assert np.array_equal(np.stack(list(read)), expected)


def test_imagej_hyperstack_and_time_with_z_refused(tmp_path):
    stack = np.arange(2 * 3 * 8 * 8, dtype=np.uint16).reshape(2, 3, 8, 8)
    tifffile.imwrite(tmp_path / "tzyx.tif", stack, imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(FmscopeError, match="time and z together"):
        open_frames(tmp_path / "tzyx.tif")
    tifffile.imwrite(tmp_path / "tyx.tif", stack[0], imagej=True, metadata={"axes": "TYX"})
    assert np.array_equal(np.stack(list(open_frames(tmp_path / "tyx.tif"))), stack[0])


@QUICK
@given(extra=st.sampled_from("RMAPHELVJK"), order=st.sampled_from(["TEYX", "ETYX", "TYXE"]), count=st.integers(2, 3))
def test_a_time_lapse_with_a_second_stack_axis_names_it_and_the_sequence_to_save(tmp_path_factory, extra, order, count):
    """NU10 (b): T with positions (R, as tifffile reads Micro-Manager MMStack scenes), tiles, angles, phases ...
    in any order: refused naming that axis (never "without a named time axis"); the fix's index gives the first
    position's (T, Y, X) sequence."""
    axes = order.replace("E", extra)
    sizes = {"T": 3, extra: count, "Y": 8, "X": 6}
    array = np.arange(np.prod([sizes[a] for a in axes]), dtype=np.uint16).reshape([sizes[a] for a in axes])
    path = tmp_path_factory.mktemp("extra") / "positions.tif"
    tifffile.imwrite(path, array, photometric="minisblack", metadata={"axes": axes})
    with pytest.raises(FmscopeError, match=rf"besides time \(T\) it has a second stack axis, .*\({extra}\)") as error:
        open_frames(path)
    assert "without a named time axis" not in str(error.value)
    index = error.value.fix.split("imread('positions.tif')[")[1].split("]")[0]
    first = eval(f"tifffile.imread(path)[{index}]")  # noqa: S307 - the index the message tells the user to type
    assert np.array_equal(first, np.take(array, 0, axis=axes.index(extra)))  # (T, Y, X): the first position


def test_a_multi_position_ome_tiff_is_refused_naming_its_series(tmp_path):
    """NU10 (a): an OME-TIFF of two positions (series Pos0, Pos1, each TYX) is refused naming both and how to save
    one (never tracked on the first without a word); a thumbnail series of another size does not count."""
    stack = np.arange(3 * 16 * 12, dtype=np.uint16).reshape(3, 16, 12)
    with tifffile.TiffWriter(tmp_path / "positions.ome.tif", ome=True) as writer:
        writer.write(stack, photometric="minisblack", metadata={"axes": "TYX", "Name": "Pos0"})
        writer.write(stack + 1, photometric="minisblack", metadata={"axes": "TYX", "Name": "Pos1"})
    with pytest.raises(FmscopeError, match=r"holds 2 series .*0: Pos0 .*1: Pos1") as error:
        open_frames(tmp_path / "positions.ome.tif")
    assert "series=1" in error.value.fix
    with tifffile.TiffWriter(tmp_path / "thumbnail.tif") as writer:
        writer.write(stack, photometric="minisblack", metadata={"axes": "TYX"})
        writer.write(stack[0, ::4, ::4])
    assert np.array_equal(np.stack(list(open_frames(tmp_path / "thumbnail.tif"))), stack)


def test_blank_frame_midway_is_tracked_through(tmp_path, segmenter):
    """case_T6: frame 2 of 5 all zeros; the run goes on, nothing is labelled on the blank frame."""
    stack, truth = moving_ellipse(5, step=(6, 0))
    stack[2] = 0
    tifffile.imwrite(tmp_path / "blank.tif", stack)
    tracked(tmp_path / "blank.tif", tmp_path / "labels.tif", segmenter)
    labels = tifffile.imread(tmp_path / "labels.tif") > 0
    assert labels.shape == (5, 96, 96) and not labels[2].any()
    assert min(dice(labels[t], truth[t]) for t in (0, 1, 3, 4)) >= 0.85


def test_constant_frames_anywhere_never_end_the_run(tmp_path, segmenter):
    """Constant (not only zero) frames, first after the prompt and last: tracked through, nothing on them."""
    stack, truth = moving_ellipse(5, step=(6, 0))
    stack[1], stack[4] = 700, 0
    tifffile.imwrite(tmp_path / "constant.tif", stack)
    tracked(tmp_path / "constant.tif", tmp_path / "labels.tif", segmenter)
    labels = tifffile.imread(tmp_path / "labels.tif") > 0
    assert not labels[1].any() and not labels[4].any()
    assert min(dice(labels[t], truth[t]) for t in (0, 2, 3)) >= 0.85


def test_a_run_that_fails_part_way_names_the_frame_and_keeps_the_frames_done(tmp_path, capsys):
    """A folder of frames whose frame 2 has another size: tracking stops there, says so, and the frames
    tracked before it are kept in labels.partial.tif; labels.tif is not written."""
    stack, _ = moving_ellipse(4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(stack):
        Image.fromarray(frame if t != 2 else frame[:90]).save(folder / f"frame{t}.png")
    capsys.readouterr()
    assert track(folder, tmp_path / "labels.tif", (15, 32, 45, 56), "--direction", "forward") == 1
    message = capsys.readouterr().err
    assert "stopped at frame 2" in message and "labels.partial.tif" in message
    assert not (tmp_path / "labels.tif").exists()
    partial = tifffile.imread(tmp_path / "labels.partial.tif")
    assert partial[0].any() and partial[1].any() and not partial[2:].any()


def test_timelapse_to_nifti_is_a_3d_label_volume(tmp_path, segmenter):
    """case_T4: `track stack.tif -o labels.nii.gz` writes a 3D single-component image (x, y, t), noted."""
    stack, truth = moving_ellipse()
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    assert "third axis is time" in tracked(tmp_path / "stack.tif", tmp_path / "labels.nii.gz", segmenter)
    image = sitk.ReadImage(str(tmp_path / "labels.nii.gz"))
    assert (image.GetDimension(), image.GetNumberOfComponentsPerPixel(), image.GetSize()) == (3, 1, (96, 96, 4))
    labels = sitk.GetArrayFromImage(image)
    assert min(dice(labels[t] > 0, truth[t]) for t in range(4)) >= 0.85


@QUICK
@given(
    suffix=st.sampled_from([".nii", ".nii.gz", ".nrrd", ".mha", ".tif"]),
    frames=st.sampled_from([1, 3, 4]),
    spacing=st.sampled_from([None, (0.5, 0.25)]),
)
def test_label_stack_writer_every_format_keeps_time_as_the_third_axis(tmp_path_factory, suffix, frames, spacing):
    """Every output format the track writer accepts: the stack read back is the stack written (3 and 4
    frames included, which a (T, H, W) array shares with RGB / RGBA pictures)."""
    rng = np.random.default_rng(frames)
    labels = rng.integers(0, 3, (frames, 6, 5)).astype(np.uint16)
    path = tmp_path_factory.mktemp("out") / f"labels{suffix}"
    note = write_label_stack(labels, path, spacing)
    if suffix == ".tif":
        assert note is None and np.array_equal(tifffile.imread(path).reshape(labels.shape), labels)
        return
    image = sitk.ReadImage(str(path))
    assert image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() == 1
    assert image.GetSize() == (5, 6, frames) and "third axis is time" in note
    assert np.array_equal(sitk.GetArrayFromImage(image), labels)
    assert image.GetSpacing()[:2] == ((0.25, 0.5) if spacing else (1.0, 1.0))
    if suffix in (".nrrd", ".mha"):
        assert image.GetMetaData("fmscope_axes") == "x y t" and TIME_AXIS_NOTE.startswith("fmscope")


def test_label_stack_writer_refuses_a_picture_format(tmp_path):
    with pytest.raises(FmscopeError, match="cannot be written as '.png'"):
        write_label_stack(np.zeros((3, 4, 4), np.uint16), tmp_path / "labels.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_a_4d_image_of_one_slice_is_read_as_time_points_and_of_several_refused(tmp_path, suffix):
    """NU11: cine MR as ACDC / M&Ms store it (x, y, 1, t; the NIfTI fourth axis is time): its t time points are the
    frames, with pixel size and frame rate; x, y, 2, t (time and z together) is refused naming both."""
    cine = np.random.default_rng(0).integers(0, 500, (5, 1, 16, 12)).astype(np.int16)  # (t, z, y, x)
    image = sitk.JoinSeries([sitk.GetImageFromArray(cine[t]) for t in range(5)])
    image.SetSpacing((1.4, 1.2, 8.0, 0.04))
    sitk.WriteImage(image, str(tmp_path / f"cine{suffix}"))
    frames = open_frames(tmp_path / f"cine{suffix}")
    assert frames.n_frames == 5 and frames.kind == "stack" and frames.spacing == pytest.approx((1.2, 1.4))
    assert all(np.array_equal(frames[t], cine[t, 0]) for t in range(5))
    assert "fourth axis, time" in " ".join(frames.notes)
    if suffix == ".nii.gz":
        assert frames.fps == pytest.approx(25.0)
    stacked = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((2, 16, 12), np.int16)) for _ in range(3)])
    sitk.WriteImage(stacked, str(tmp_path / f"slices{suffix}"))
    with pytest.raises(FmscopeError, match="2 slices through 3 time points, time and z together"):
        open_frames(tmp_path / f"slices{suffix}")


def oblique_cine(tmp_path, name: str = "cine.nii.gz", sform_shift=(0.0, 0.0, 0.0), times: int = 6):
    """An ACDC-like cine NIfTI (nibabel): 64 x 64 x 1 x ``times`` int16, one short-axis slice turned 30 degrees about z,
    1.4 x 1.4 x 8 mm, 0.03 s a frame, at (-40, 25, 60) mm (qform code 1); the sform (code 2) moved by ``sform_shift``
    mm. A disc moves 4 px a frame along i. Returns (path, qform, sform, truth (t, y, x))."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    cine = rng.normal(100, 10, (64, 64, 1, times))
    ii, jj = np.mgrid[:64, :64]
    truth = np.zeros((times, 64, 64), bool)  # (t, y = j, x = i)
    for t in range(times):
        disc = (ii - 20 - 4 * t) ** 2 + (jj - 30) ** 2 < 64
        truth[t] = disc.T
        cine[disc, 0, t] += 400
    turn = np.deg2rad(30)
    qform = np.eye(4)
    qform[:3, :3] = [[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]]
    qform[:3, :3] = qform[:3, :3] @ np.diag([1.4, 1.4, 8.0])
    qform[:3, 3] = [-40, 25, 60]
    sform = qform.copy()
    sform[:3, 3] += sform_shift
    image = nib.Nifti1Image(cine.astype(np.int16), None)
    image.set_qform(qform, 1)
    image.set_sform(sform, 2)
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 0.03
    nib.save(image, tmp_path / name)
    return tmp_path / name, qform, sform, truth


@pytest.mark.slow
def test_cine_labels_keep_the_slices_position_and_orientation(tmp_path, segmenter):
    """NUC6 (ACDC / M&Ms cine, MONAILabel#211, SynthSeg#111): `track cine.nii.gz -o labels.nii.gz` on an oblique
    slice through time writes a 4D (x, y, 1, t) label image carrying the cine's qform, sform, both codes and pixdim
    (time step included), so viewers of either rule (ITK: qform, nibabel / FSL: sform) overlay it on the slice (was:
    a 3D (x, y, t) image at the origin, axes along -x / -y)."""
    import nibabel as nib

    path, qform, sform, truth = oblique_cine(tmp_path, sform_shift=(0.0, 0.0, 2.0), times=3)
    assert tracked(path, tmp_path / "labels.nii.gz", segmenter, box=(12, 22, 28, 38)) is None
    labels, cine = nib.load(tmp_path / "labels.nii.gz"), nib.load(path)
    assert labels.shape == (64, 64, 1, 3)
    assert np.allclose(labels.get_qform(), qform, atol=1e-4) and np.allclose(labels.get_sform(), sform, atol=1e-4)
    assert [int(labels.header[k]) for k in ("qform_code", "sform_code")] == [1, 2]
    assert np.allclose(labels.header.get_zooms(), cine.header.get_zooms())  # 1.4, 1.4, 8 mm, 0.03 s
    itk_labels, itk_cine = sitk.ReadImage(str(tmp_path / "labels.nii.gz")), sitk.ReadImage(str(path))
    assert np.allclose(itk_labels.GetOrigin(), itk_cine.GetOrigin()) and np.allclose(
        itk_labels.GetDirection(), itk_cine.GetDirection()
    )
    data = np.asanyarray(labels.dataobj)[:, :, 0].transpose(2, 1, 0)  # (x, y, t) -> (t, y, x)
    assert min(dice(data[t] > 0, truth[t]) for t in range(3)) >= 0.8


@pytest.mark.parametrize("source, output", [(".nrrd", ".nrrd"), (".mha", ".nii.gz"), (".nii", ".mha")])
def test_cine_labels_in_every_volume_format_lie_on_the_inputs_grid(tmp_path, source, output):
    """A 4D image of one oblique slice through time (x, y, 1, t) written by SimpleITK as NRRD / MHA / NIfTI: the
    time-lapse labels, in any volume format, are a 4D image with the input's spacing, origin and direction; a NIfTI
    whose qform and sform differ cannot be written as NRRD (one transform): refused (by `fmscope track` before any
    work), nothing written."""
    cine = np.random.default_rng(1).integers(0, 500, (5, 1, 16, 12)).astype(np.int16)  # (t, z, y, x)
    image = sitk.JoinSeries([sitk.GetImageFromArray(cine[t]) for t in range(5)])
    image.SetSpacing((1.4, 1.2, 8.0, 0.04))
    image.SetOrigin((-40.0, 25.0, 60.0, 0.0))
    turn = np.deg2rad(30)
    direction = np.eye(4)
    direction[:2, :2] = [[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]
    image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(image, str(tmp_path / f"cine{source}"))
    frames = open_frames(tmp_path / f"cine{source}")
    labels = (np.stack([frames[t] for t in range(5)]) > 250).astype(np.uint16)
    assert write_label_stack(labels, tmp_path / f"labels{output}", frames.spacing, frames.geometry) is None
    written, read = sitk.ReadImage(str(tmp_path / f"labels{output}")), sitk.ReadImage(str(tmp_path / f"cine{source}"))
    assert written.GetSize() == (12, 16, 1, 5)
    assert np.array_equal(sitk.GetArrayFromImage(written)[:, 0], labels)
    for get in ("GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(written, get)(), getattr(read, get)(), atol=1e-4), get
    path, *_ = oblique_cine(tmp_path, "moved.nii.gz", sform_shift=(5.0, 0.0, 0.0), times=2)
    frames = open_frames(path)
    with pytest.raises(FmscopeError, match="qform and sform place its voxels differently"):
        write_label_stack(np.zeros((2, 64, 64), np.uint16), tmp_path / "moved.nrrd", frames.spacing, frames.geometry)
    assert track(path, tmp_path / "moved.nrrd") == 1  # `fmscope track` refuses it before loading a model
    assert not (tmp_path / "moved.nrrd").exists()


def disc_animation(frames: int = 4) -> list[Image.Image]:
    """96 x 96 RGB frames of a bright disc (r 10) moving right: centre x = 12 + 15 t, y = 48."""
    out = []
    yy, xx = np.mgrid[:96, :96]
    for t in range(frames):
        array = np.full((96, 96, 3), 20, np.uint8)
        array[(yy - 48) ** 2 + (xx - (12 + 15 * t)) ** 2 <= 10**2] = 200
        out.append(Image.fromarray(array))
    return out


@pytest.mark.parametrize(
    ("name", "kind"), [("clip.gif", "animated GIF"), ("clip.png", "APNG"), ("clip.webp", "animated WebP")]
)
def test_an_animated_gif_apng_or_webp_is_frames_for_track_and_refused_by_segment(tmp_path, capsys, name, kind):
    """NUE2: an animation saved by Pillow (`save_all`, as Fiji "Animated Gif" and imageio write them) is refused
    by the picture reader naming its frames and `fmscope track` (was: frame 1 segmented without a word); the
    frames reader reads its frames in order (was: "Cannot tell what clip.gif holds"), and `fmscope track`
    follows the disc through them. A still GIF / PNG given to track is named a single 2D image."""
    from fmscope.imaging.io import load_image

    frames = disc_animation()
    path = tmp_path / name
    frames[0].save(
        path,
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
        **({"lossless": True} if name.endswith("webp") else {}),
    )
    with pytest.raises(FmscopeError, match=rf"(?s)is an {kind} of 4 frames, not one 2D image.*fmscope track {name}"):
        load_image(path)
    assert main(["segment", str(path), "--box", "30", "36", "54", "60", "-o", str(tmp_path / "m.tif")]) == 1
    assert not (tmp_path / "m.tif").exists()
    source = open_frames(path)
    assert (source.n_frames, source.shape, source.rgb, source.fps) == (4, (96, 96), True, 10.0)
    assert any(f"{kind} of 4 frames" in note for note in source.notes)
    for t, frame in enumerate(source):
        assert np.abs(frame.astype(int) - np.asarray(frames[t]).astype(int)).max() <= (0 if name.endswith("png") else 8)
    out = tmp_path / "labels.tif"
    capsys.readouterr()
    assert track(path, out, (1, 37, 23, 59), "--fast", "--table", str(tmp_path / "t.csv")) == 0
    labels = tifffile.imread(out)
    assert labels.shape == (4, 96, 96)
    for t in range(4):
        xs = np.nonzero(labels[t])[1]
        assert abs(xs.mean() - (12 + 15 * t)) < 2
    still = tmp_path / ("still" + path.suffix)
    frames[0].save(still)
    with pytest.raises(FmscopeError, match="(?s)holds a single 2D image, not frames.*fmscope segment"):
        open_frames(still)


@pytest.mark.parametrize("sar", ["64/45", "16/15", "8/9", "32/27", "1/1"])
def test_a_video_of_non_square_pixels_is_read_as_stored_with_a_note_naming_its_sar(tmp_path, capsys, sar):
    """NUE5: SD capture video stores non-square pixels (sample aspect ratio, written here by PyAV as ffmpeg's
    `setsar` does) that players stretch: the frames are read as stored (never resampled) and a note names the
    SAR and that boxes, labels and areas are in stored pixels (was: no word); square pixels: no note."""
    import fractions

    ratio = fractions.Fraction(sar)
    path = tmp_path / "capture.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 120, 96, "yuv420p"
        stream.codec_context.sample_aspect_ratio = ratio
        for t in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((96, 120, 3), 40 * t, np.uint8), format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(path)) as check:
        assert ratio == 1 or check.streams.video[0].sample_aspect_ratio == ratio  # the file holds it
    frames = open_frames(path)
    assert (frames.n_frames, frames.shape) == (3, (96, 120))
    notes = [note for note in frames.notes if "not square" in note]
    if ratio == 1:
        assert not notes
        return
    assert len(notes) == 1
    assert f"SAR {ratio.numerator}:{ratio.denominator}" in notes[0] and "stored pixels" in notes[0]
    assert f"shown as {round(120 * ratio)}" in notes[0]


def test_a_frame_folder_with_a_frame_of_another_size_names_it(tmp_path):
    """Frames of a folder share the first frame's size; another size is refused naming the file and both sizes."""
    for name, shape in (("f01.png", (40, 50)), ("f02.png", (40, 50)), ("f03.png", (41, 50))):
        Image.fromarray(np.full(shape, 100, np.uint8)).save(tmp_path / name)
    frames = open_frames(tmp_path)
    assert frames[1].shape == (40, 50)
    with pytest.raises(FmscopeError, match=r"f03\.png is 50x41, the first frame 50x40"):
        frames[2]
