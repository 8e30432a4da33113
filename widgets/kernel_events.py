"""Letting a button be pressed while a cell runs: hand the frontend's waiting messages to chosen widgets now.

A cell that trains blocks the kernel's thread, and the kernel reads the frontend's messages (a button click is
one) only between cells. `deliver_widget_messages(comm_ids)`, called from the training loop's callback on the
kernel's thread, reads the messages waiting for the main shell: those for the given widgets are handled at once,
the others (the next cell, other widgets) are handed to the kernel's own handler unchanged, which runs them in
their order once the cell ends. It uses ipykernel's message stream, so it knows ipykernel 6 and 7; anywhere
else (a plain script, another kernel) it does nothing and returns False.
"""
from __future__ import annotations

from typing import Iterable


def _kernel():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None) if shell is not None else None


def _main_shell_stream(kernel):
    """The ZMQStream on which the kernel's main thread receives its shell messages."""
    thread = getattr(kernel, "shell_channel_thread", None)
    if thread is not None and getattr(kernel, "_supports_kernel_subshells", False):
        pair = getattr(getattr(thread, "manager", None), "_shell_channel_to_main", None)   # ipykernel 7
        return getattr(pair, "to_stream", None)
    return getattr(kernel, "shell_stream", None)                                          # ipykernel 6


def supported() -> bool:
    kernel = _kernel()
    return kernel is not None and _main_shell_stream(kernel) is not None


def deliver_widget_messages(comm_ids: Iterable[str], limit: int = 100) -> bool:
    """Handle the waiting frontend messages addressed to `comm_ids` now; False where that is not possible."""
    kernel = _kernel()
    stream = _main_shell_stream(kernel) if kernel is not None else None
    if stream is None or getattr(stream, "socket", None) is None or stream.closed():
        return False
    import zmq

    ids = set(comm_ids)
    socket, session = stream.socket, kernel.session
    for _ in range(limit):
        if not socket.poll(0, zmq.POLLIN):
            break
        try:
            frames = socket.recv_multipart(zmq.NOBLOCK, copy=getattr(stream, "_recv_copy", False))
        except zmq.Again:
            break
        msg, idents = None, None
        try:
            # peek at the header and content without checking the signature: the session keeps every signature
            # it has checked and refuses to see one twice, so only a message handled here is deserialized
            idents, body = session.feed_identities(list(frames), copy=False)
            part = lambda i: body[i].bytes if hasattr(body[i], "bytes") else body[i]
            header, content = session.unpack(part(1)), session.unpack(part(4))
            if header.get("msg_type") == "comm_msg" and content.get("comm_id") in ids:
                msg = session.deserialize(body, content=True, copy=False)
        except Exception:  # noqa: BLE001 - not ours to judge: the kernel's handler gets it unchanged
            msg = None
        if msg is not None:
            kernel.shell_handlers["comm_msg"](stream, idents, msg)
        else:
            # exactly what the stream would have done on its own: the kernel queues it behind this cell
            stream._run_callback(stream._recv_callback, frames)
    return True
