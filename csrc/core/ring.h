/*
** ring.h -- a byte ring of records, as plain data (prefix conc__ring_).
**
** One block holds a conc_Ring header and, right after it, the data area.
** Nothing in it is a pointer: positions are byte counters, so the block may
** sit at any address, in memory that several processes map at different
** addresses, or be copied elsewhere with memcpy and used there.
**
** A record is an 8-byte length header (u32 length, u32 its complement, so a
** scribbled length shows) followed by the bytes, padded to 8. The data area
** is a power of two of at least 8 bytes, so a header never straddles its end;
** the bytes of a record may, and are then copied in two parts.
**
** head and tail count the bytes ever removed and appended: tail - head is the
** bytes held, index = counter & (cap - 1), and full and empty differ even
** when the counters wrap past 2^64.
**
** Locking: none. The caller holds one mutex around every call, the readers
** of count/used/free included; nothing here waits, allocates or enters the
** kernel. Results are CONC_OK or a negative CONC_E* code of errors.h.
**
** Corruption: every call first checks the header (cap against its check
** word, alignment, tail - head <= cap, count against the bytes held), and a
** get checks the record's length header against the bytes held. A failed
** check returns CONC_EVALUE and changes nothing. All indexes are masked by
** the checked cap, so no call reads or writes outside the data area, nor
** beyond a caller's buffer, whatever a buggy process wrote over the header
** or the data: unless it rewrote cap and its check word consistently, which
** no stray write does by accident. A ring that says CONC_EVALUE stays so
** until conc__ring_init starts it again (empty).
*/
#ifndef CONC_RING_H
#define CONC_RING_H

#include <stddef.h>
#include <stdint.h>

typedef struct conc_Ring {
  uint64_t cap;        /* bytes in the data area: a power of two, >= 8 */
  uint64_t cap_check;  /* cap ^ a magic number: a scribbled cap shows */
  uint64_t head;       /* bytes ever removed; the next record is at head */
  uint64_t tail;       /* bytes ever appended; the next put goes at tail */
  uint64_t count;      /* records held */
  unsigned char data[];  /* the data area, cap bytes */
} conc_Ring;

/* One part of a record put in several (conc__ring_putv). */
typedef struct conc_RingPart {
  const void *data;
  size_t len;
} conc_RingPart;

#define CONC_RING_MINCAP ((size_t)8)
/* The largest capacity: 2^62 on 64-bit hosts, 2^30 on 32-bit ones. */
#define CONC_RING_MAXCAP ((size_t)1 << (sizeof(size_t) * 8 - 2))
/* A record's length header: u32 length + u32 complement. */
#define CONC_RING_HDR ((size_t)8)
/* The longest record any ring could hold: the header stores a u32. */
#define CONC_RING_MAXREC ((size_t)UINT32_MAX)

/* The bytes to reserve for a ring of at least `capacity` data bytes: the
** capacity rounded up to a power of two (at least CONC_RING_MINCAP), plus
** the header. 0 when capacity exceeds CONC_RING_MAXCAP. The block must be
** aligned to 8 bytes (malloc's and mmap's are). O(1). */
size_t conc__ring_size(size_t capacity);

/* The data bytes one record of len bytes takes: its header plus len padded
** to 8. A put of len needs this much free; SIZE_MAX past CONC_RING_MAXREC. */
size_t conc__ring_recsize(size_t len);

/* Makes r an empty ring over a block of conc__ring_size(capacity) bytes,
** which the caller owns and keeps for the ring's life (conc__ring_init
** takes nothing, and there is nothing to free). Anything in the block is
** overwritten; calling it again empties the ring, also a corrupt one.
** CONC_OK, CONC_E2BIG (capacity past CONC_RING_MAXCAP) or CONC_EVALUE
** (r not aligned to 8). O(1): the data area is not cleared. */
int conc__ring_init(conc_Ring *r, size_t capacity);

/* Appends one record of len bytes copied from data (which may be NULL when
** len is 0). CONC_OK; CONC_EFULL when it does not fit now (a get may make
** room); CONC_E2BIG when it never could (conc__ring_recsize(len) > the
** capacity); CONC_EVALUE when the header is corrupt. Nothing is written
** unless CONC_OK. O(len). */
int conc__ring_put(conc_Ring *r, const void *data, size_t len);

/* The same for one record made of n parts laid end to end, as if their
** bytes had been joined first: a message header and its body, say, with no
** copy to join them. Parts of length 0 may have data NULL. O(total). */
int conc__ring_putv(conc_Ring *r, const conc_RingPart *parts, size_t n);

/* The length of the next record in *len, which stays in the ring. CONC_OK,
** CONC_EEMPTY (none; *len untouched) or CONC_EVALUE (the header or the
** record's length header is corrupt). O(1). */
int conc__ring_peek(const conc_Ring *r, size_t *len);

/* Removes the next record into buf, of bufcap bytes (buf may be NULL when
** bufcap is 0), and sets *len to its length. CONC_OK; CONC_EEMPTY (none;
** *len untouched); CONC_E2BIG when bufcap < its length: nothing is removed,
** nothing written to buf, and *len says what is needed; CONC_EVALUE when
** the header or the record's length header is corrupt (nothing changes).
** O(length). */
int conc__ring_get(conc_Ring *r, void *buf, size_t bufcap, size_t *len);

/* Makes the capacity at least `capacity` (rounded up to a power of two),
** keeping every record: the block must hold conc__ring_size(capacity)
** bytes. The records end up contiguous from head; a ring that had wrapped
** copies the part at the start of the data area to just past its old end
** (so a writer killed half-way leaves the old layout whole). CONC_OK,
** CONC_E2BIG (past CONC_RING_MAXCAP) or CONC_EVALUE (a corrupt header, or
** a capacity below the current one). O(old capacity) at worst. */
int conc__ring_grow(conc_Ring *r, size_t capacity);

/* Checks the header alone: CONC_OK or CONC_EVALUE. Every call above does so
** itself; this is for a process that maps a ring someone else made, which
** should also check conc__ring_size(conc__ring_capacity(r)) against the
** size of its mapping. O(1). */
int conc__ring_check(const conc_Ring *r);

/* After a writer died in a put or a get (its process killed while it held
** the caller's mutex): makes the header consistent again, keeping every
** whole record from head on, and returns how many. O(records). */
size_t conc__ring_repair(conc_Ring *r);

/* Counts, each O(1), all 0 on a corrupt header (see conc__ring_check). */
size_t conc__ring_capacity(const conc_Ring *r); /* data bytes */
size_t conc__ring_count(const conc_Ring *r);    /* records held */
size_t conc__ring_used(const conc_Ring *r);     /* data bytes held */
size_t conc__ring_free(const conc_Ring *r);     /* data bytes free now */
/* The longest record a put could ever store here: the capacity less one
** header, at most CONC_RING_MAXREC. */
size_t conc__ring_maxrecord(const conc_Ring *r);

#endif
