/*
** lconn.c -- multiprocessing.Pipe and Connection seen from Lua: send and
** recv carry one value each in the wire format, send_bytes and recv_bytes
** raw strings. A Connection closes at the end of `local c <close> = ...`.
*/
#include <stdlib.h>
#include <string.h>

#include "lconc.h"

#define STACK_FRAME 256

static int meta_conn(lua_State *L);

static conc_Binding conn_binding = {.type = &conc__conn_type,
                                    .open = meta_conn, .bound = 1};

static conc_Conn *check_conn(lua_State *L) {
  return (conc_Conn *)conc__checkbound(L, 1, &conc__conn_type);
}

/* Python's messages for a closed end and the wrong direction. */
static int conn_error(lua_State *L, conc_Conn *c, int rc, int reading) {
  if (rc == CONC_EVALUE)
    return conc__raise(L, CONC_EBADF, reading ? "connection is write-only"
                                              : "connection is read-only");
  if (rc == CONC_EEOF) return conc__raise(L, rc, "");
  (void)c;
  return conc__raise(L, rc, NULL);
}

static conc_Conn *check_open(lua_State *L) {
  conc_Conn *c = check_conn(L);
  if (conc__conn_fileno(c) < 0) conc__raise(L, CONC_ECONNCLOSED, NULL);
  return c;
}

/* core.Pipe(duplex=true) -> two Connections */
static int l_pipe(lua_State *L) {
  conc_Conn *a, *b;
  int rc = conc__conn_pair(&a, &b, lua_isnoneornil(L, 1) || lua_toboolean(L, 1));
  if (rc != CONC_OK)
    return conc__raise(L, rc, rc == CONC_ENOMEM ? NULL : "Pipe: %s",
                       strerror(-rc));
  conc__pushnew(L, (conc_Obj *)a);
  conc__pushnew(L, (conc_Obj *)b);
  return 2;
}

static int send_frame(lua_State *L, conc_Conn *c, const char *data,
                      size_t len) {
  int rc;
  conc__check_interrupt(L);
  rc = conc__conn_send(c, data, len);
  return rc == CONC_OK ? 0 : conn_error(L, c, rc, 0);
}

/* c:send(obj) */
static int conn_send(lua_State *L) {
  static const char *const names[] = {"obj"};
  conc_Conn *c = check_open(L);
  char buf[STACK_FRAME];
  size_t len = sizeof buf;
  conc_Msg *m;
  int rc;
  luaL_checkany(L, 2);
  if (!conc__conn_writable(c)) return conn_error(L, c, CONC_EVALUE, 0);
  m = conc__encode_plain(L, 2, names, buf, &len);
  conc__check_interrupt(L);
  rc = conc__conn_send(c, m ? m->data : buf, m ? m->len : len);
  conc__msg_free(m);
  return rc == CONC_OK ? 0 : conn_error(L, c, rc, 0);
}

/* c:send_bytes(buf, offset=0, size=nil): offset counts from 0, as Python's */
static int conn_send_bytes(lua_State *L) {
  conc_Conn *c = check_open(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer off = luaL_optinteger(L, 3, 0), size;
  if (off < 0) return conc__raise(L, CONC_EVALUE, "offset is negative");
  if ((size_t)off > len) return conc__raise(L, CONC_EVALUE, "buffer length < offset");
  size = luaL_optinteger(L, 4, (lua_Integer)(len - (size_t)off));
  if (size < 0) return conc__raise(L, CONC_EVALUE, "size is negative");
  if ((size_t)off + (size_t)size > len)
    return conc__raise(L, CONC_EVALUE, "buffer length < offset + size");
  return send_frame(L, c, s + off, (size_t)size);
}

static int recv_frame(lua_State *L, conc_Conn *c, size_t maxlen, int raw) {
  char buf[STACK_FRAME], *data;
  size_t len;
  int rc;
  if (!conc__conn_readable(c)) return conn_error(L, c, CONC_EVALUE, 1);
  conc__check_interrupt(L);
  rc = conc__conn_recv(c, buf, sizeof buf, &data, &len, maxlen);
  if (rc != CONC_OK) return conn_error(L, c, rc, 1);
  lua_settop(L, 0);
  return conc__push_block(L, data, len, raw, data != buf);
}

static int conn_recv(lua_State *L) {
  return recv_frame(L, check_open(L), SIZE_MAX, 0);
}

/* c:recv_bytes(maxlength=nil) */
static int conn_recv_bytes(lua_State *L) {
  conc_Conn *c = check_open(L);
  lua_Integer max = luaL_optinteger(L, 2, -1);
  if (!lua_isnoneornil(L, 2) && max < 0)
    return conc__raise(L, CONC_EVALUE, "negative maxlength");
  return recv_frame(L, c, max < 0 ? SIZE_MAX : (size_t)max, 1);
}

/* c:poll(timeout=0): nil waits for good, as Python's poll(None) */
static int conn_poll(lua_State *L) {
  conc_Conn *c = check_open(L);
  double deadline;
  int rc;
  if (lua_gettop(L) < 2) deadline = conc__deadline(0);
  else deadline = conc__opt_deadline(L, 2, CONC_NEG_NOWAIT, NULL);
  conc__check_interrupt(L);
  rc = conc__conn_poll(c, deadline);
  if (rc < 0) return conn_error(L, c, rc, 1);
  lua_pushboolean(L, rc);
  return 1;
}

static int conn_fileno(lua_State *L) {
  lua_pushinteger(L, conc__conn_fileno(check_open(L)));
  return 1;
}

static int conn_close(lua_State *L) {
  conc__conn_close(check_conn(L));
  return 0;
}

static int conn_index(lua_State *L) {
  conc_Conn *c = check_conn(L);
  size_t len = 0;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len)
                                                : NULL;
  if (conc__getmethod(L, &conn_binding, k, len)) return 1;
  if (k && strcmp(k, "closed") == 0)
    lua_pushboolean(L, conc__conn_fileno(c) < 0);
  else if (k && strcmp(k, "readable") == 0)
    lua_pushboolean(L, conc__conn_readable(c));
  else if (k && strcmp(k, "writable") == 0)
    lua_pushboolean(L, conc__conn_writable(c));
  else
    lua_pushnil(L);
  return 1;
}

static int meta_conn(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__index", conn_index}, {"__close", conn_close},
    {"send", conn_send}, {"recv", conn_recv},
    {"send_bytes", conn_send_bytes}, {"recv_bytes", conn_recv_bytes},
    {"poll", conn_poll}, {"fileno", conn_fileno}, {"close", conn_close},
    {NULL, NULL}};
  conc__newmeta(L, &conn_binding, meta);
  return 0;
}

void conc__open_conn(lua_State *L) {
  static const luaL_Reg fns[] = {{"Pipe", l_pipe}, {NULL, NULL}};
  conc__bind(&conn_binding);
  luaL_setfuncs(L, fns, 0);
}
