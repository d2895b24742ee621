// Package mpegts converts between MPEG-TS and the stream hub, once per stream: Ingest demuxes an
// MPEG-TS byte stream (H264, H265, AAC, Opus) into RTP packets on a hub publication, and a Muxer
// turns a hub stream's tracks back into MPEG-TS, fanned out to any number of subscribers through
// bounded queues. It knows nothing of the transport: SRT carries the bytes today, and the
// transcoder may read a Muxer's output the same way.
package mpegts
