"""serve.py: the JSON API in this process (FastAPI's TestClient: real requests through the app and its
middleware); serve.py's own uvicorn server, started as a user starts it, over real HTTP (a chunked body
over the limit, concurrent requests, a port in use); and the drawing page in headless Chromium against
that server, drawn on with the mouse and a finger.

The shared run's checkpoint was trained on tiny synthetic data: it does not recognise real digits, so
what the page and the API answer is checked against the model's reading of the same preprocessed
digit, and against each other."""

import base64
import http.client
import io
import itertools
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from mnist_classifier.inference import InferenceModel, load_for_inference
from mnist_classifier.mnist_format import mnist_digit
from mnist_classifier.serving import TOP, create_app

from .conftest import ROOT, TrainedRun, run_script, script_module, user_environment
from .drawings import encoded, page, png_header, ring
from .test_predict import BLANK, TRUNCATED

LIMIT = 300_000  # bytes: the tests' upload limit, above their digits' files
# Headless on a machine without network: no sandbox (root), no GPU, no background connections.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_SECONDS = 120  # for serve.py to load torch and its checkpoint on a busy machine
REQUEST_SECONDS = 60  # for the server to answer one request (each socket read and write) on a busy machine
STOP_SECONDS = 30  # for the server to stop once told to
SMALL_LIMIT_MB = 0.01  # the real server's upload limit: above an MNIST digit's PNG, below a BMP page
# ... in bytes: 0.01 x 2**20 = 10,485.76, so the largest whole body within it has 10,485
SMALL_LIMIT_BYTES = 10_485


@pytest.fixture(scope="module")
def model(trained_run: TrainedRun) -> InferenceModel:
    return load_for_inference(trained_run.best)


@pytest.fixture(scope="module")
def client(model: InferenceModel) -> TestClient:
    return TestClient(create_app(model, max_upload_bytes=LIMIT))


def upload(client: TestClient, content: bytes, name: str = "digit.png"):
    return client.post("/api/predict", files={"image": (name, content, "image/png")})


def pixels(data_url: str) -> np.ndarray:
    """The grey levels of a PNG in a data: URL."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def expected_answer(model: InferenceModel, content: bytes) -> tuple[list[str], list[float], np.ndarray]:
    """The 3 likeliest labels and probabilities of the digit predict.py finds in an image, and the digit."""
    digit = mnist_digit(content)
    values, indices = model.probabilities(digit[None])[0].topk(3)
    return [model.classes[index] for index in indices], values.tolist(), digit.numpy()


def test_the_api_reads_an_uploaded_digit_as_predict_does(client: TestClient, model: InferenceModel) -> None:
    content = encoded(page(ring()), "JPEG")
    response = upload(client, content, "photo.jpg")
    assert response.status_code == 200
    answer = response.json()
    labels, probabilities, digit = expected_answer(model, content)
    assert [guess["label"] for guess in answer["top"]] == labels
    assert [guess["probability"] for guess in answer["top"]] == pytest.approx(probabilities, abs=1e-6)
    assert (answer["label"], answer["probability"]) == (labels[0], pytest.approx(probabilities[0], abs=1e-6))
    assert np.array_equal(pixels(answer["input"]), digit)  # the 28x28 the net saw


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "it is empty"),
        (b"a note, not a picture", "it is not an image (PNG, JPEG, WebP, BMP or TIFF)"),
        (TRUNCATED, "it is truncated or corrupt"),
        (png_header(10_000, 5_000), "10000x5000 pixels is over the limit of 40,000,000"),
        (BLANK, "no digit found"),
    ],
    ids=["0 bytes", "text", "truncated", "bomb", "blank page"],
)
def test_a_bad_upload_is_422_with_one_line_naming_it(
    client: TestClient, content: bytes, message: str
) -> None:
    response = upload(client, content, "mine.png")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith(f"mine.png is invalid: {message}") and "\n" not in detail


def test_a_request_without_an_image_is_422(client: TestClient) -> None:
    response = client.post("/api/predict", data={"picture": "none"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "the request is invalid: send an image file as the multipart form field `image`"
    }


def test_a_body_over_the_limit_is_413_and_the_server_goes_on(
    client: TestClient, model: InferenceModel
) -> None:
    too_large = {"detail": f"the request is invalid: its body is over the limit of {LIMIT:,} bytes"}
    declared = upload(client, b"\0" * (LIMIT + 1))  # Content-Length says so: refused unread
    assert (declared.status_code, declared.json()) == (413, too_large)

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused once the bytes read pass the limit
        yield b"--edge\r\nContent-Disposition: form-data; name=image; filename=a.png\r\n\r\n"
        yield from [b"\0" * 100_000] * 4

    streamed = client.post(
        "/api/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=edge"}
    )
    assert (streamed.status_code, streamed.json()) == (413, too_large)
    content = encoded(page(ring()))
    assert upload(client, content).json()["label"] == expected_answer(model, content)[0][0]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413(
    client: TestClient, model: InferenceModel, chunked: bool
) -> None:
    content = encoded(page(ring()))
    answers = {}
    for size in (LIMIT, LIMIT + 1):
        body, content_type = form_of_size(content, size)
        sent = iter([body[: size // 2], body[size // 2 :]]) if chunked else body  # chunked: no Content-Length
        response = client.post("/api/predict", content=sent, headers={"content-type": content_type})
        answers[size] = (response.status_code, response.json())
    assert answers[LIMIT][0] == 200 and answers[LIMIT][1]["label"] == expected_answer(model, content)[0][0]
    too_large = {"detail": f"the request is invalid: its body is over the limit of {LIMIT:,} bytes"}
    assert answers[LIMIT + 1] == (413, too_large)


def test_the_page_is_served_with_its_canvas(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert '<canvas id="canvas"' in response.text and "api/predict" in response.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/none.ckpt"], "{tmp}/none.ckpt is invalid: no such checkpoint file"),
        (["{ckpt}", "--port", "70000"], "--port 70000 is invalid: give 0 to 65535"),
        (["{ckpt}", "--max-upload-mb", "0"], "--max-upload-mb 0.0 is invalid: give a number of MB > 0"),
        (
            ["{ckpt}", "--host", "192.0.2.1"],
            "--host 192.0.2.1 is invalid: Cannot assign requested address; give an address of this machine",
        ),
    ],
    ids=["checkpoint", "port", "limit", "foreign host"],
)
def test_serve_refuses_bad_input_in_one_line_before_serving(
    trained_run: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        script_module("serve.py").main([arg.format(tmp=tmp_path, ckpt=trained_run.best) for arg in argv])
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"error: {message.format(tmp=tmp_path)}\n"


def ipv6_loopback() -> str | None:
    """Why this machine cannot listen on IPv6's loopback (::1), or None when it can."""
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        return f"::1 cannot be bound here ({error.strerror}): IPv6 is off on this machine"
    return None


def test_serve_refuses_a_port_in_use_on_an_ipv6_address(
    trained_run: TrainedRun, capsys: pytest.CaptureFixture
) -> None:
    if (missing := ipv6_loopback()) is not None:
        pytest.skip(missing)
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as stop:
            script_module("serve.py").main([str(trained_run.best), "--host", "::1", "--port", str(port)])
    assert stop.value.code == 2
    message = f"--port {port} is invalid: it is in use; give another port, or 0 for a free one"
    assert capsys.readouterr().err == f"error: {message}\n"


class Server:
    """serve.py started as a user starts it, on a free port; its URL and port once uvicorn says it listens.
    Its log is read by a thread to its end, so that every wait on it has a deadline: a hung server fails
    the test instead of hanging it."""

    def __init__(self, checkpoint: Path, data_dir: Path, cwd: Path, *options: str) -> None:
        command = [sys.executable, str(ROOT / "serve.py"), str(checkpoint), "--port", "0", *options]
        self.process = subprocess.Popen(
            command, cwd=cwd, env=user_environment(data_dir, measured=True), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.log: list[str] = []
        self.url = ""
        self.host, self.port = "", 0
        self.listening = threading.Event()
        threading.Thread(target=self.read_log, daemon=True).start()  # reads stderr to its end

    def read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            if found := re.search(r"Uvicorn running on (http://([^\s:/]+):(\d+))", line):
                self.host, self.port = found.group(2), int(found.group(3))
                self.url = found.group(1) + "/"
                self.listening.set()
        self.listening.set()  # ended: the test fails with the log

    def wait(self) -> str:
        assert self.listening.wait(STARTUP_SECONDS) and self.url, "".join(self.log)
        return self.url

    def stop(self) -> None:
        """Ctrl+C's signal, as a user stops it: serve.py shuts down and exits 0 (killed if it does not
        stop in time)."""
        self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_SECONDS)
            raise AssertionError("serve.py did not stop when told to:\n" + "".join(self.log)) from None
        assert status == 0, "".join(self.log)


def form(content: bytes, name: str = "digit.png") -> tuple[bytes, str]:
    """A multipart form with an image as its field `image`, as a browser sends it, and its content type."""
    boundary = "edge-of-the-form"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def form_of_size(content: bytes, size: int) -> tuple[bytes, str]:
    """form(content) after a field `pad` that makes the whole body exactly `size` bytes (the API reads
    the image and ignores other fields)."""
    image, content_type = form(content)
    head = b'--edge-of-the-form\r\nContent-Disposition: form-data; name="pad"\r\n\r\n'
    fill = size - len(head) - 2 - len(image)
    assert fill >= 0, f"{size} bytes cannot hold the image's form"
    body = head + b"x" * fill + b"\r\n" + image
    assert len(body) == size
    return body, content_type


def post(server: Server, body: bytes | list[bytes], content_type: str) -> tuple[int, dict]:
    """The status and JSON of the server's answer to a POST to /api/predict, over a connection of its own
    with a deadline on each read and write. A list of chunks is sent chunked: no Content-Length."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=REQUEST_SECONDS)
    try:
        if isinstance(body, bytes):
            connection.request("POST", "/api/predict", body, {"Content-Type": content_type})
        else:
            headers = {"Content-Type": content_type, "Transfer-Encoding": "chunked"}
            connection.request("POST", "/api/predict", iter(body), headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def post_image(server: Server, content: bytes) -> tuple[int, dict]:
    return post(server, *form(content))


@pytest.fixture(scope="module")
def small_limit_server(
    trained_run: TrainedRun, tiny_mnist: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """serve.py with an upload limit of SMALL_LIMIT_MB, listening; stopped after the module's tests."""
    server = Server(
        trained_run.best, tiny_mnist, tmp_path_factory.mktemp("serve"), "--max-upload-mb", str(SMALL_LIMIT_MB)
    )
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def real_digits_png(mnist_test: tuple[torch.Tensor, torch.Tensor], count: int) -> list[bytes]:
    """MNIST's first `count` test digits, each as a PNG file (predict.py reads them as they are)."""
    return [encoded(Image.fromarray(digit.numpy())) for digit in mnist_test[0][:count]]


def assert_an_answer(status: int, answer: dict) -> None:
    """A 200 answer in the API's shape: a label and probability, the 3 likeliest, and a 28x28 PNG."""
    assert status == 200, answer
    assert set(answer) == {"label", "probability", "top", "input"}
    assert len(answer["top"]) == TOP
    assert all(set(guess) == {"label", "probability"} for guess in answer["top"])
    assert {"label": answer["label"], "probability": answer["probability"]} == answer["top"][0]
    assert pixels(answer["input"]).shape == (28, 28)


@pytest.mark.slow
def test_the_real_server_refuses_a_chunked_body_over_the_limit_with_413_and_goes_on(
    small_limit_server: Server, model: InferenceModel
) -> None:
    limit = SMALL_LIMIT_BYTES
    photo = encoded(page(ring()), "BMP")  # a readable image, over the limit
    body, content_type = form(photo)
    assert len(body) > limit
    chunks = [body[start : start + 4096] for start in range(0, len(body), 4096)]  # no Content-Length
    status, answer = post(small_limit_server, chunks, content_type)
    too_large = {"detail": f"the request is invalid: its body is over the limit of {limit:,} bytes"}
    assert (status, answer) == (413, too_large)

    small = encoded(page(ring()))  # the same digit as a PNG, under the limit
    status, answer = post_image(small_limit_server, small)
    assert_an_answer(status, answer)
    labels, probabilities, digit = expected_answer(model, small)
    assert [guess["label"] for guess in answer["top"]] == labels
    assert [guess["probability"] for guess in answer["top"]] == pytest.approx(probabilities, abs=1e-6)
    assert np.array_equal(pixels(answer["input"]), digit)
    assert small_limit_server.process.poll() is None, "".join(small_limit_server.log)


@pytest.mark.slow
def test_the_real_server_reads_a_body_of_exactly_its_limit_and_refuses_one_byte_more(
    small_limit_server: Server, model: InferenceModel
) -> None:
    content = encoded(page(ring()))
    too_large = {
        "detail": f"the request is invalid: its body is over the limit of {SMALL_LIMIT_BYTES:,} bytes"
    }
    for chunked in (False, True):  # Content-Length declared, or none: chunks counted as they come
        answers = {}
        for size in (SMALL_LIMIT_BYTES, SMALL_LIMIT_BYTES + 1):
            body, content_type = form_of_size(content, size)
            sent = [body[start : start + 4096] for start in range(0, size, 4096)] if chunked else body
            answers[size] = post(small_limit_server, sent, content_type)
        status, answer = answers[SMALL_LIMIT_BYTES]
        assert_an_answer(status, answer)
        assert answer["label"] == expected_answer(model, content)[0][0]
        assert answers[SMALL_LIMIT_BYTES + 1] == (413, too_large), chunked


@pytest.mark.slow
def test_the_real_server_answers_concurrent_requests_as_it_answers_them_one_at_a_time(
    small_limit_server: Server, model: InferenceModel, mnist_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The handler runs in worker threads sharing one model: no request may see another's digit."""
    digits = real_digits_png(mnist_test, 8)
    alone = [post_image(small_limit_server, content) for content in digits]
    start = threading.Barrier(len(digits), timeout=REQUEST_SECONDS)

    def at_once(content: bytes) -> tuple[int, dict]:
        start.wait()  # every thread sends at the same moment
        return post_image(small_limit_server, content)

    with ThreadPoolExecutor(len(digits)) as pool:
        together = list(pool.map(at_once, digits, timeout=REQUEST_SECONDS * 2))
    for content, (status, answer) in zip(digits, together, strict=True):
        assert_an_answer(status, answer)
        labels, probabilities, digit = expected_answer(model, content)
        assert [guess["label"] for guess in answer["top"]] == labels
        assert [guess["probability"] for guess in answer["top"]] == pytest.approx(probabilities, abs=1e-6)
        assert np.array_equal(pixels(answer["input"]), digit)
    assert together == alone
    assert len({answer["input"] for _, answer in together}) == len(digits)  # distinct digits: none mixed up


@pytest.mark.slow
def test_serve_refuses_a_port_in_use_in_one_line(trained_run: TrainedRun, tmp_path: Path) -> None:
    """Refused before the checkpoint is loaded, not left to uvicorn's log lines after it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [str(trained_run.best), "--port", str(port)]
        result = run_script("serve.py", *command, data_dir=tmp_path, cwd=tmp_path, timeout=STARTUP_SECONDS)
    message = f"--port {port} is invalid: it is in use; give another port, or 0 for a free one"
    assert (result.returncode, result.stderr) == (2, f"error: {message}\n")


def stroke(tab: Page, points: list[tuple[float, float]]) -> None:
    """A stroke of the mouse through the canvas's points (pixels from its top left), button held down."""
    box = tab.locator("#canvas").bounding_box()
    tab.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    tab.mouse.down()
    for x, y in points[1:]:
        tab.mouse.move(box["x"] + x, box["y"] + y, steps=8)
    tab.mouse.up()


def finger(tab: Page, points: list[tuple[float, float]]) -> None:
    """A stroke of a finger through the canvas's points: touch events, as a phone's screen sends them."""
    box = tab.locator("#canvas").bounding_box()
    touch = tab.context.new_cdp_session(tab)
    at = [{"x": box["x"] + x, "y": box["y"] + y} for x, y in points]
    touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": at[:1]})
    for start, end in itertools.pairwise(at):
        for step in np.linspace(0, 1, 9)[1:]:
            point = {axis: start[axis] + step * (end[axis] - start[axis]) for axis in ("x", "y")}
            touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def shown(tab: Page, answered: int) -> dict:
    """What the page shows once it shows the answer to its `answered`-th image."""
    tab.wait_for_selector(f'#result[data-answered="{answered}"]')
    return {
        "label": tab.inner_text("#label"),
        "top": tab.locator("#top li").all_inner_texts(),
        "input": tab.get_attribute("#seen", "src") if tab.is_visible("#seen") else None,
        "error": tab.inner_text("#error"),
    }


def the_apis_answer(tab: Page, url: str, content: bytes) -> dict:
    """The API's answer for an image, asked by the browser outside the page."""
    file = {"name": "drawing.png", "mimeType": "image/png", "buffer": content}
    return tab.request.post(url + "api/predict", multipart={"image": file}).json()


def as_shown(answer: dict) -> dict:
    """What the page shows for an answer of the API."""
    top = [f"{guess['label']}: {100 * guess['probability']:.1f}%" for guess in answer["top"]]
    return {"label": answer["label"], "top": top, "input": answer["input"], "error": ""}


def canvas_png(tab: Page) -> bytes:
    data_url = tab.evaluate("document.getElementById('canvas').toDataURL('image/png')")
    return base64.b64decode(data_url.split(",", 1)[1])


@pytest.mark.slow
def test_a_digit_drawn_on_the_page_is_read_as_the_api_and_predict_read_it(
    trained_run: TrainedRun, tiny_mnist: Path, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium is not installed: make system (or apt-get install -y chromium)"
    server = Server(trained_run.best, tiny_mnist, tmp_path)
    try:
        url = server.wait()
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                tmp_path / "profile", executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
            )
            tab = context.new_page()
            tab.goto(url)

            stroke(tab, [(70, 50), (210, 50), (120, 240)])  # a 7 in two strokes: each is read
            stroke(tab, [(100, 150), (190, 150)])
            drawn = shown(tab, answered=2)
            drawing = canvas_png(tab)
            assert drawn == as_shown(the_apis_answer(tab, url, drawing))
            assert pixels(drawn["input"]).shape == (28, 28)
            assert np.array_equal(pixels(drawn["input"]), mnist_digit(drawing).numpy())  # as predict sees it

            tab.click("#clear")  # a third image: the cleared drawing's
            finger(tab, [(140, 40), (135, 240)])  # a 1
            touched = shown(tab, answered=4)
            assert touched == as_shown(the_apis_answer(tab, url, canvas_png(tab)))
            assert touched["input"] != drawn["input"]

            (tmp_path / "notes.png").write_text("a note")
            tab.set_input_files("#photo", tmp_path / "notes.png")  # a bad upload: the error, no label
            assert shown(tab, answered=5) == {
                "label": "?",
                "top": [],
                "input": None,
                "error": "notes.png is invalid: it is not an image (PNG, JPEG, WebP, BMP or TIFF)",
            }
            photo = tmp_path / "photo.png"
            page(ring()).save(photo)
            tab.set_input_files("#photo", photo)  # the server went on serving
            assert shown(tab, answered=6) == as_shown(the_apis_answer(tab, url, photo.read_bytes()))
            context.close()
    finally:
        server.stop()
