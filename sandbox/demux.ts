/**
 * Docker's multiplexed attach stream (Tty=false): frames of an 8-byte header
 * [stream type, 0, 0, 0, payload size (uint32 BE)] followed by the payload.
 * Source: Docker Engine API, "Attach to a container" / stream format.
 */
export class FrameDemuxer {
  private buf: Buffer = Buffer.alloc(0);

  /** @param onPayload called with each frame's payload (stdout and stderr alike, in order). */
  constructor(private readonly onPayload: (payload: Buffer, streamType: number) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 8) {
      const size = this.buf.readUInt32BE(4);
      if (this.buf.length < 8 + size) break;
      const type = this.buf[0]!;
      const payload = this.buf.subarray(8, 8 + size);
      this.buf = this.buf.subarray(8 + size);
      if (payload.length) this.onPayload(payload, type);
    }
  }
}
