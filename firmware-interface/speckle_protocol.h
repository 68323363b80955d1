/*
 * speckle_protocol.h: the speckle device protocol, version 1, for firmware authors.
 *
 * The specification is PROTOCOL.md in this folder; this header only gives its numbers.
 * Everything on the wire is little-endian. Payloads are described by byte offsets (not
 * by packed structs, whose layout is compiler-specific): read and write them with the
 * speckle_get_/speckle_put_ helpers below, which work on any CPU byte order.
 *
 * Wire frame = COBS(header | payload | crc32) followed by one 0x00 delimiter.
 * The Rust test suite checks that every SPECKLE_ constant here equals the reference
 * implementation's value.
 */
#ifndef SPECKLE_PROTOCOL_H
#define SPECKLE_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Framing ---------------------------------------------------------------------------- */

#define SPECKLE_PROTOCOL_VERSION 1
#define SPECKLE_DELIMITER 0x00
#define SPECKLE_HEADER_LEN 12
#define SPECKLE_CRC_LEN 4
/* Hard upper bound on payload_len; a receiver rejects longer frames before buffering them. */
#define SPECKLE_MAX_PAYLOAD_LIMIT 0x01000000u /* 16 MiB */
/* Smallest max_payload a HELLO or CAPABILITIES may carry. A device answers a HELLO offering
 * less with ERROR PAYLOAD_TOO_LARGE (detail 64, empty message), assumes 64 until the first
 * HELLO, and cuts a CAPABILITIES description or ERROR message so that the payload fits. */
#define SPECKLE_MIN_MAX_PAYLOAD 64

/* Header offsets (identical in every protocol version). */
#define SPECKLE_HDR_VERSION 0     /* u8  */
#define SPECKLE_HDR_TYPE 1        /* u8  */
#define SPECKLE_HDR_FLAGS 2       /* u16, send 0 */
#define SPECKLE_HDR_SEQ 4         /* u32 */
#define SPECKLE_HDR_PAYLOAD_LEN 8 /* u32 */

/* CRC-32/ISO-HDLC over header and payload, appended little-endian. */
#define SPECKLE_CRC_POLY 0x04C11DB7u
#define SPECKLE_CRC_POLY_REFLECTED 0xEDB88320u
#define SPECKLE_CRC_INIT 0xFFFFFFFFu
#define SPECKLE_CRC_XOROUT 0xFFFFFFFFu
#define SPECKLE_CRC_REFIN 1
#define SPECKLE_CRC_REFOUT 1
#define SPECKLE_CRC_CHECK 0xCBF43926u /* CRC of the 9 ASCII bytes "123456789" */

/* ---- Message types ---------------------------------------------------------------------- */

#define SPECKLE_MSG_HELLO 0x01              /* host -> device */
#define SPECKLE_MSG_CAPABILITIES 0x02       /* device -> host */
#define SPECKLE_MSG_CONFIGURE 0x03          /* host -> device */
#define SPECKLE_MSG_TRANSFORM_REQUEST 0x04  /* host -> device */
#define SPECKLE_MSG_TRANSFORM_RESPONSE 0x05 /* device -> host */
#define SPECKLE_MSG_GET_STATUS 0x06         /* host -> device */
#define SPECKLE_MSG_STATUS 0x07             /* device -> host */
#define SPECKLE_MSG_ERROR 0x08              /* device -> host */
#define SPECKLE_MSG_RESET_NOTICE 0x09       /* device -> host, unsolicited, seq 0 */

/* ---- Payload layouts (byte offsets within the payload) ---------------------------------- */

/* HELLO: 8 bytes */
#define SPECKLE_HELLO_LEN 8
#define SPECKLE_HELLO_MIN_VERSION 0 /* u8  */
#define SPECKLE_HELLO_MAX_VERSION 1 /* u8  */
#define SPECKLE_HELLO_MAX_PAYLOAD 4 /* u32 */

/* CAPABILITIES: 46 bytes + description */
#define SPECKLE_CAPS_FIXED_LEN 46
#define SPECKLE_CAPS_INPUT_DIM 0        /* u32 */
#define SPECKLE_CAPS_OUTPUT_DIM 4       /* u32 */
#define SPECKLE_CAPS_MAX_INPUT_DIM 8    /* u32 */
#define SPECKLE_CAPS_MAX_OUTPUT_DIM 12  /* u32 */
#define SPECKLE_CAPS_MAX_BATCH 16       /* u32 */
#define SPECKLE_CAPS_MAX_PAYLOAD 20     /* u32 */
#define SPECKLE_CAPS_FRAME_TIME_NS 24   /* u32 */
#define SPECKLE_CAPS_EXPOSURE_NS 28     /* u32 */
#define SPECKLE_CAPS_BOOT_COUNT 32      /* u32 */
#define SPECKLE_CAPS_BIT_DEPTH 36       /* u8: 1..16, 0 = float32 */
#define SPECKLE_CAPS_FW_MAJOR 38        /* u16 */
#define SPECKLE_CAPS_FW_MINOR 40        /* u16 */
#define SPECKLE_CAPS_FW_PATCH 42        /* u16 */
#define SPECKLE_CAPS_DESCRIPTION_LEN 44 /* u16 */
#define SPECKLE_CAPS_DESCRIPTION 46     /* UTF-8 bytes */

/* CONFIGURE: 20 bytes */
#define SPECKLE_CONFIGURE_LEN 20
#define SPECKLE_CONFIGURE_INPUT_DIM 0     /* u32 */
#define SPECKLE_CONFIGURE_OUTPUT_DIM 4    /* u32 */
#define SPECKLE_CONFIGURE_OUTPUT_OFFSET 8 /* u32 */
#define SPECKLE_CONFIGURE_EXPOSURE_NS 12  /* u32, 0 = keep the current exposure */
#define SPECKLE_CONFIGURE_GAIN 16         /* f32, 0.0 = keep the current gain */

/* TRANSFORM_REQUEST: 16 bytes + frame_count * ceil(input_dim / 8) */
#define SPECKLE_TREQ_FIXED_LEN 16
#define SPECKLE_TREQ_FIRST_FRAME 0 /* u64 */
#define SPECKLE_TREQ_FRAME_COUNT 8 /* u32, 1..max_batch (0 is MALFORMED) */
#define SPECKLE_TREQ_INPUT_DIM 12  /* u32 */
#define SPECKLE_TREQ_FRAMES 16     /* feature j = bit (j % 8) of byte (j / 8), LSB first */

/* TRANSFORM_RESPONSE: 20 bytes + frame_count * output_dim * value_size */
#define SPECKLE_TRESP_FIXED_LEN 20
#define SPECKLE_TRESP_FIRST_FRAME 0 /* u64, echo */
#define SPECKLE_TRESP_FRAME_COUNT 8 /* u32, echo */
#define SPECKLE_TRESP_OUTPUT_DIM 12 /* u32 */
#define SPECKLE_TRESP_BIT_DEPTH 16  /* u8 */
#define SPECKLE_TRESP_VALUES 20     /* u8 (1..8 bits), u16 (9..16 bits) or f32 (0) */

/* GET_STATUS: 0 bytes. STATUS: 20 bytes */
#define SPECKLE_STATUS_LEN 20
#define SPECKLE_STATUS_STATE 0         /* u8: 0 no session, 1 ready */
#define SPECKLE_STATUS_BOOT_COUNT 4    /* u32 */
#define SPECKLE_STATUS_FRAMES_SHOWN 8  /* u64 */
#define SPECKLE_STATUS_BAD_FRAMES 16   /* u32 */

/* ERROR: 8 bytes + message */
#define SPECKLE_ERROR_FIXED_LEN 8
#define SPECKLE_ERROR_CODE 0        /* u16 */
#define SPECKLE_ERROR_MESSAGE_LEN 2 /* u16 */
#define SPECKLE_ERROR_DETAIL 4      /* u32 */
#define SPECKLE_ERROR_MESSAGE 8     /* UTF-8 bytes */

/* RESET_NOTICE: 8 bytes */
#define SPECKLE_RESET_LEN 8
#define SPECKLE_RESET_BOOT_COUNT 0 /* u32 */
#define SPECKLE_RESET_REASON 4     /* u8: 0 power-on, 1 watchdog, 2 requested, 3 fault */

/* ---- Error codes -------------------------------------------------------------------------- */

/* When several apply, a device reports the first in PROTOCOL.md section 7's order. */
#define SPECKLE_ERR_BAD_FRAME 1           /* damaged frame received (NAK, seq 0) */
#define SPECKLE_ERR_UNSUPPORTED_VERSION 2 /* detail = device version */
#define SPECKLE_ERR_UNKNOWN_MESSAGE 3     /* detail = type byte (also device->host types) */
#define SPECKLE_ERR_MALFORMED 4           /* payload length or layout, frame_count 0 */
#define SPECKLE_ERR_NOT_CONFIGURED 5      /* detail = boot count; host re-handshakes */
#define SPECKLE_ERR_DIMENSION_MISMATCH 6  /* detail = bound broken: max, 1 for 0, active width */
#define SPECKLE_ERR_BATCH_TOO_LARGE 7     /* detail = max_batch */
#define SPECKLE_ERR_PAYLOAD_TOO_LARGE 8   /* detail = host max payload (64: HELLO below it) */
#define SPECKLE_ERR_UNSUPPORTED 9
#define SPECKLE_ERR_INVALID_FRAMES 10     /* detail = index of the first padded frame */
#define SPECKLE_ERR_DEVICE_FAULT 11

/* ---- Helpers ------------------------------------------------------------------------------ */

static inline uint16_t speckle_get_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t speckle_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t speckle_get_u64(const uint8_t *p) {
    return (uint64_t)speckle_get_u32(p) | ((uint64_t)speckle_get_u32(p + 4) << 32);
}
static inline void speckle_put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void speckle_put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void speckle_put_u64(uint8_t *p, uint64_t v) {
    speckle_put_u32(p, (uint32_t)v);
    speckle_put_u32(p + 4, (uint32_t)(v >> 32));
}

/* Bytes per camera value for a bit depth, 0 if the depth cannot be carried. */
static inline size_t speckle_value_size(uint8_t bit_depth) {
    return bit_depth == 0 ? 4 : bit_depth <= 8 ? 1 : bit_depth <= 16 ? 2 : 0;
}

/* CRC-32/ISO-HDLC, bitwise (small; use a 256-entry table if speed matters).
 * Feed chunks with crc = speckle_crc32_update(crc, ...) starting from SPECKLE_CRC_INIT,
 * then finish with crc ^ SPECKLE_CRC_XOROUT. */
static inline uint32_t speckle_crc32_update(uint32_t crc, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (SPECKLE_CRC_POLY_REFLECTED & (0u - (crc & 1u)));
        }
    }
    return crc;
}
static inline uint32_t speckle_crc32(const uint8_t *data, size_t len) {
    return speckle_crc32_update(SPECKLE_CRC_INIT, data, len) ^ SPECKLE_CRC_XOROUT;
}

/* COBS-encodes src into dst (capacity >= len + len / 254 + 1), no delimiter.
 * Returns the encoded length. */
static inline size_t speckle_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst) {
    size_t code_at = 0, out = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == 0) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
        } else {
            dst[out++] = src[i];
            if (++code == 0xFF) {
                dst[code_at] = code;
                code_at = out++;
                code = 1;
            }
        }
    }
    dst[code_at] = code;
    return out;
}

/* COBS-decodes src (no delimiter) into dst (capacity >= len). Returns the decoded length, or
 * (size_t)-1 for a damaged frame. */
static inline size_t speckle_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst) {
    size_t i = 0, out = 0;
    while (i < len) {
        uint8_t code = src[i++];
        if (code == 0 || i + (size_t)(code - 1) > len) {
            return (size_t)-1;
        }
        for (uint8_t k = 1; k < code; k++) {
            if (src[i] == 0) {
                return (size_t)-1;
            }
            dst[out++] = src[i++];
        }
        if (code != 0xFF && i < len) {
            dst[out++] = 0;
        }
    }
    return out;
}

#ifdef __cplusplus
}
#endif

#endif /* SPECKLE_PROTOCOL_H */
