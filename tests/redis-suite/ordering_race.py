#!/usr/bin/env python3
"""How often commands sent on three connections without waiting run out of order.

Sends type/list's "BRPOPLPUSH with multiple blocked clients" by hand: a BRPOPLPUSH on a
first connection (whose target is a string), another on a second, then an LPUSH on a third.
Redis runs them in that order, so the first answers WRONGTYPE; when the second runs first it
takes the element and the first blocks (counted out of order after a 2 s wait).

    tests/redis-suite/ordering_race.py PORT [TRIES]

Run it against a throwaway server on loopback: it deletes and writes blist{t}, target1{t},
target2{t}. docs/compatibility.md ("Ordering across connections") quotes its counts.
"""
import socket
import sys


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(2)
    return sock


def send(sock, *args):
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))


def read(sock):
    try:
        return sock.recv(4096)
    except socket.timeout:
        return None


def main():
    port = int(sys.argv[1])
    tries = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    out_of_order = 0
    for _ in range(tries):
        admin, first, second = connect(port), connect(port), connect(port)
        for sock in (admin, first, second):
            send(sock, b"PING")
            read(sock)
        send(admin, b"DEL", b"blist{t}", b"target1{t}", b"target2{t}")
        read(admin)
        send(admin, b"SET", b"target1{t}", b"nolist")
        read(admin)
        send(first, b"BRPOPLPUSH", b"blist{t}", b"target1{t}", b"0")
        send(second, b"BRPOPLPUSH", b"blist{t}", b"target2{t}", b"0")
        send(admin, b"LPUSH", b"blist{t}", b"foo")
        read(admin)
        answer = read(first)
        if answer is None or not answer.startswith(b"-WRONGTYPE"):
            out_of_order += 1
        for sock in (admin, first, second):
            sock.close()
    print(f"out of order: {out_of_order} of {tries}")


if __name__ == "__main__":
    main()
