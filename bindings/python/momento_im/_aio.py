"""asyncio side of the binding: a message stream fed from the library's event thread,
and a session whose blocking methods run in a worker thread.

The library calls on_message and on_update on its own event thread; an asyncio loop may
only be touched from its thread. MessageStream (and UpdateStream) hand each message
(update) over with loop.call_soon_threadsafe into an asyncio.Queue, so a coroutine can
``async for msg in stream``.
"""

from __future__ import annotations

import asyncio
from typing import (TYPE_CHECKING, Any, AsyncIterator, Generic, List, Optional, Tuple,
                    TypeVar, Union)

if TYPE_CHECKING:  # imported for the annotations only: the package imports this module
    from . import Message, ReadMarker, Session, UpdateKind

T = TypeVar("T")

# Marks the end of a stream in its queue (after leave).
_END = object()


class _Stream(Generic[T]):
    """Items fed from any thread, read as an async iterator on one event loop. Ends
    after the session has left.

    Unbounded: items wait in memory until read. Iterate it from one task; it is bound
    to the event loop it was created on."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._ended = False

    def _put_threadsafe(self, item: Any) -> None:
        """From any thread (the library's event thread for messages)."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is left to read it
            pass

    def end(self) -> None:
        """Called once the session has left: iteration stops after what is queued."""
        self._put_threadsafe(_END)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._ended = True
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]

    async def get(self, timeout: Optional[float] = None) -> T:
        """The next item; asyncio.TimeoutError after `timeout` seconds (None: no
        limit); StopAsyncIteration once the session has left and all was read."""
        return await asyncio.wait_for(self.__anext__(), timeout)


class MessageStream(_Stream["Message"]):
    """The messages of one session, as an async iterator (history first, oldest
    first, then live ones, each once). Ends after the session has left."""

    def deliver(self, msg: Message) -> None:
        """The on_message callback that feeds the stream."""
        self._put_threadsafe(msg)


class UpdateStream(_Stream[Tuple[Union["UpdateKind", int], "Message"]]):
    """The updates of one session (join's on_update) as an async iterator of
    (UpdateKind, Message) pairs, the message in its new state, once per change, in
    the order they happened (the kind is an int for a kind newer than this binding). Apart from messages(): an update may be read before or
    after the message it changes. Ends after the session has left."""

    def deliver_update(self, kind: Union[UpdateKind, int], msg: Message) -> None:
        """The on_update callback that feeds the stream."""
        self._put_threadsafe((kind, msg))


class AsyncSession:
    """A joined chat for asyncio code (from ``await Client.join_async(...)``).

    ``messages()`` is the stream of received messages, ``updates()`` that of the
    changes to them (edits, deletions, reactions); the other methods are the
    Session's, run in the default executor so the event loop never blocks. Use
    ``async with`` or ``await leave()``. Errors as for Session."""

    def __init__(self, session: Session, stream: MessageStream, updates: UpdateStream):
        self.session = session
        self._stream = stream
        self._updates = updates

    @property
    def cache(self) -> str:
        return self.session.cache

    @property
    def chat(self) -> str:
        return self.session.chat

    @property
    def joined(self) -> bool:
        return self.session.joined

    def messages(self) -> MessageStream:
        """The session's messages: ``async for msg in session.messages(): ...``."""
        return self._stream

    def updates(self) -> UpdateStream:
        """The session's updates: ``async for kind, msg in session.updates(): ...``."""
        return self._updates

    async def send(self, text: Union[str, bytes], reply_to: Optional[Union[str, bytes]] = None,
                   id: Optional[Union[str, bytes]] = None) -> str:
        """Session.send in a worker thread; returns the message's id."""
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.session.send(text, reply_to=reply_to, id=id))

    async def edit(self, message_id: Union[str, bytes], text: Union[str, bytes]) -> str:
        """Session.edit in a worker thread; returns the event's id."""
        return await asyncio.get_running_loop().run_in_executor(None, self.session.edit,
                                                                message_id, text)

    async def delete(self, message_id: Union[str, bytes]) -> str:
        """Session.delete in a worker thread; returns the event's id."""
        return await asyncio.get_running_loop().run_in_executor(None, self.session.delete,
                                                                message_id)

    async def react(self, message_id: Union[str, bytes], key: Union[str, bytes],
                    on: bool = True) -> str:
        """Session.react in a worker thread; returns the event's id."""
        return await asyncio.get_running_loop().run_in_executor(None, self.session.react,
                                                                message_id, key, on)

    async def mark_read(self, message_id: Union[str, bytes]) -> None:
        """Session.mark_read in a worker thread."""
        await asyncio.get_running_loop().run_in_executor(None, self.session.mark_read,
                                                         message_id)

    async def unread_count(self) -> Tuple[int, bool]:
        """Session.unread_count in a worker thread: (count, exact)."""
        return await asyncio.get_running_loop().run_in_executor(None,
                                                                self.session.unread_count)

    async def read_markers(self) -> List[ReadMarker]:
        """Session.read_markers in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(None,
                                                                self.session.read_markers)

    async def history(self, last_n: int = 0) -> List[Message]:
        """Session.history in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(None, self.session.history,
                                                                last_n)

    async def remove_message(self, message_id: Union[str, bytes]) -> None:
        """Session.remove_message in a worker thread."""
        await asyncio.get_running_loop().run_in_executor(None, self.session.remove_message,
                                                         message_id)

    async def leave(self) -> None:
        """Session.leave in a worker thread; the message stream ends after it."""
        await asyncio.get_running_loop().run_in_executor(None, self.session.leave)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()
