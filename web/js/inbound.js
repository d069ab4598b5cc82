// @ts-check
/**
 * Counters of a peer connection's incoming tracks from its stats report:
 * what the client's `stats()` shows (people, tests) and what the lossy-call
 * benchmark reads from its peer-to-peer pages.
 */

/**
 * Per incoming track (`inbound-rtp`): codec, packets and bytes, losses and
 * NACKs, frames, freezes, concealed audio and the jitter buffer's delay
 * (seconds, summed over what it emitted).
 * @param {RTCStatsReport} report
 */
export function inboundStats(report) {
  const inbound = [];
  for (const entry of report.values()) {
    if (entry.type !== 'inbound-rtp') continue;
    inbound.push({
      kind: entry.kind,
      mid: entry.mid,
      codec: entry.codecId ? report.get(entry.codecId)?.mimeType : undefined,
      packetsReceived: entry.packetsReceived ?? 0,
      bytesReceived: entry.bytesReceived ?? 0,
      packetsLost: entry.packetsLost ?? 0,
      nackCount: entry.nackCount ?? 0,
      framesDecoded: entry.framesDecoded ?? 0,
      frameWidth: entry.frameWidth,
      frameHeight: entry.frameHeight,
      freezeCount: entry.freezeCount ?? 0,
      totalFreezesDuration: entry.totalFreezesDuration ?? 0,
      totalSamplesReceived: entry.totalSamplesReceived ?? 0,
      concealedSamples: entry.concealedSamples ?? 0,
      jitterBufferDelay: entry.jitterBufferDelay ?? 0,
      jitterBufferEmittedCount: entry.jitterBufferEmittedCount ?? 0,
    });
  }
  return inbound;
}
