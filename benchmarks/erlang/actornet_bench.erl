%% The benchmark workloads of `python -m benchmarks`, on Erlang/OTP.
%%
%% Started by benchmarks/erlang.py as a distributed node that reads one command
%% per line on stdin and answers one line on stdout:
%%
%%   local_send N            -> @@ ok rate=R
%%   local_call N            -> @@ ok rate=R p50=US p99=US
%%   remote_send N Size      -> @@ ok rate=R
%%   remote_call N           -> @@ ok rate=R p50=US p99=US
%%   fanout K M Size         -> @@ ok rate=R
%%   pg_join N               -> @@ ok ms=MS local_ms=MS
%%   global_register N       -> @@ ok rate=R p50=US p99=US
%%   spawn N                 -> @@ ok rate=R kib=KIB reached=N
%%   max_procs N             -> @@ ok reached=N rate=R
%%   quit                    -> @@ bye
%%
%% Errors answer "@@ error Text"; "@@ peer OSPID" announces a peer node. Remote workloads run against peer nodes
%% started on demand with the `peer` module (OTP 25+) on 127.0.0.1.
-module(actornet_bench).
-behaviour(gen_server).

-export([main/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).
-export([sink/2, collector/3, fanout_sinks/3, pg_watch/3, idle/0, start_echo/0]).

%% -- the command loop ----------------------------------------------------------

main() ->
    io:format("@@ ready ~s~n", [erlang:system_info(otp_release)]),
    loop(#{}).

loop(Peers) ->
    case io:get_line("") of
        eof -> halt(0);
        {error, _} -> halt(1);
        Line ->
            Words = string:lexemes(string:trim(Line), " "),
            case Words of
                ["quit"] ->
                    [catch peer:stop(P) || {P, _} <- maps:values(Peers)],
                    io:format("@@ bye~n"),
                    halt(0);
                _ ->
                    {Reply, Peers1} =
                        try command(Words, Peers)
                        catch C:E:St ->
                            {{error, io_lib:format("~p:~p ~p", [C, E, St])}, Peers}
                        end,
                    answer(Reply),
                    loop(Peers1)
            end
    end.

answer({error, Text}) ->
    io:format("@@ error ~s~n", [re:replace(lists:flatten(Text), "\n", " ", [global, {return, list}])]);
answer(Pairs) ->
    io:format("@@ ok~s~n", [[io_lib:format(" ~s=~w", [K, V]) || {K, V} <- Pairs]]).

int(S) -> list_to_integer(S).

command(["local_send", N], P) -> {local_send(int(N)), P};
command(["local_call", N], P) -> {local_call(int(N)), P};
command(["remote_send", N, Size], P0) ->
    {Peer, P} = peer_node(1, P0),
    {remote_send(Peer, int(N), int(Size)), P};
command(["remote_call", N], P0) ->
    {Peer, P} = peer_node(1, P0),
    {remote_call(Peer, int(N)), P};
command(["fanout", K, M, Size], P0) ->
    {Peer, P} = peer_node(1, P0),
    {fanout(Peer, int(K), int(M), int(Size)), P};
command(["pg_join", N], P0) ->
    {Peer, P} = peer_node(1, P0),
    {pg_join(Peer, int(N)), P};
command(["global_register", N], P0) ->
    {Peer1, P1} = peer_node(1, P0),
    {Peer2, P} = peer_node(2, P1),
    {global_register([Peer1, Peer2], int(N)), P};
command(["spawn", N], P) -> {spawn_rate(int(N)), P};
command(["max_procs", N], P) -> {max_procs(int(N)), P};
command(Other, P) -> {{error, io_lib:format("unknown command ~p", [Other])}, P}.

peer_node(I, Peers) ->
    case maps:find(I, Peers) of
        {ok, {_, Node}} -> {Node, Peers};
        error ->
            Name = list_to_atom(lists:flatten(
                io_lib:format("bench_peer~b_~s", [I, os:getpid()]))),
            Dir = filename:dirname(code:which(?MODULE)),
            {ok, Pid, Node} = peer:start_link(#{
                name => Name, host => "127.0.0.1", longnames => true,
                args => ["-setcookie", atom_to_list(erlang:get_cookie()), "-pa", Dir,
                         "-kernel", "start_pg", "true",
                         "-kernel", "inet_dist_use_interface", "{127,0,0,1}"]}),
            pong = net_adm:ping(Node),
            {module, ?MODULE} = rpc:call(Node, code, ensure_loaded, [?MODULE]),
            io:format("@@ peer ~s~n", [rpc:call(Node, os, getpid, [])]),
            {Node, Peers#{I => {Pid, Node}}}
    end.

%% -- helpers -------------------------------------------------------------------

now_ns() -> erlang:monotonic_time(nanosecond).

secs(T0) -> (now_ns() - T0) / 1.0e9.

percentile(Sorted, Q) ->
    Len = length(Sorted),
    K = max(0, min(Len - 1, round(Q / 100 * (Len - 1)))),
    lists:nth(K + 1, Sorted).

latency(LatNs, Elapsed) ->
    Us = lists:sort([X / 1000 || X <- LatNs]),
    [{rate, length(LatNs) / Elapsed}, {p50, percentile(Us, 50)}, {p99, percentile(Us, 99)}].

send_loop(_Pid, N, N) -> ok;
send_loop(Pid, I, N) -> Pid ! {msg, I}, send_loop(Pid, I + 1, N).

send_loop(_Pid, N, N, _Payload) -> ok;
send_loop(Pid, I, N, Payload) -> Pid ! {msg, I, Payload}, send_loop(Pid, I + 1, N, Payload).

receive_n(0) -> ok;
receive_n(N) -> receive _ -> receive_n(N - 1) end.

idle() -> receive _ -> ok end.

%% -- workloads -----------------------------------------------------------------

sink(ReportTo, N) ->
    receive_n(N),
    ReportTo ! {sink_done, self()}.

local_send(N) ->
    Self = self(),
    Pid = spawn(fun() -> receive_n(N), Self ! done end),
    T0 = now_ns(),
    send_loop(Pid, 0, N),
    receive done -> ok end,
    [{rate, N / secs(T0)}].

start_echo() ->
    {ok, Pid} = gen_server:start(?MODULE, [], []),
    Pid.

init([]) -> {ok, nostate}.
handle_call(Request, _From, State) -> {reply, Request, State}.
handle_cast(_Request, State) -> {noreply, State}.
handle_info(_Msg, State) -> {noreply, State}.

call_loop(Server, N) -> call_loop(Server, 0, N, []).
call_loop(_Server, N, N, Acc) -> Acc;
call_loop(Server, I, N, Acc) ->
    T = now_ns(),
    {call, I} = gen_server:call(Server, {call, I}),
    call_loop(Server, I + 1, N, [now_ns() - T | Acc]).

local_call(N) ->
    Server = start_echo(),
    T0 = now_ns(),
    Lat = call_loop(Server, N),
    Elapsed = secs(T0),
    gen_server:stop(Server),
    latency(Lat, Elapsed).

payload(Size) -> list_to_binary([I rem 251 || I <- lists:seq(1, Size)]).

remote_send(Peer, N, Size) ->
    Payload = payload(Size),
    Pid = spawn(Peer, ?MODULE, sink, [self(), N]),
    T0 = now_ns(),
    send_loop(Pid, 0, N, Payload),
    receive {sink_done, Pid} -> ok end,
    [{rate, N / secs(T0)}].

remote_call(Peer, N) ->
    Server = rpc:call(Peer, ?MODULE, start_echo, []),
    T0 = now_ns(),
    Lat = call_loop(Server, N),
    Elapsed = secs(T0),
    gen_server:stop(Server),
    latency(Lat, Elapsed).

collector(ReportTo, Tag, K) ->
    receive_n(K),
    ReportTo ! {fanout_done, Tag}.

fanout_sinks(ReportTo, K, M) ->
    Tag = make_ref(),
    Collector = spawn(?MODULE, collector, [ReportTo, Tag, K]),
    {Tag, [spawn(?MODULE, sink, [Collector, M]) || _ <- lists:seq(1, K)]}.

fanout(Peer, K, M, Size) ->
    Payload = payload(Size),
    {Tag, Sinks} = rpc:call(Peer, ?MODULE, fanout_sinks, [self(), K, M]),
    T0 = now_ns(),
    fan(Sinks, 0, M, Payload),
    receive {fanout_done, Tag} -> ok end,
    [{rate, K * M / secs(T0)}].

fan(_Sinks, M, M, _Payload) -> ok;
fan(Sinks, I, M, Payload) ->
    Msg = {msg, I, Payload},
    [S ! Msg || S <- Sinks],
    fan(Sinks, I + 1, M, Payload).

pg_watch(ReportTo, Group, N) ->
    {Ref, Members} = pg:monitor(Group),
    ReportTo ! {pg_watching, Group},
    pg_count(Ref, length(Members), N),
    pg:demonitor(Ref),
    ReportTo ! {pg_seen, Group}.

pg_count(_Ref, Seen, N) when Seen >= N -> ok;
pg_count(Ref, Seen, N) ->
    receive
        {Ref, join, _Group, Pids} -> pg_count(Ref, Seen + length(Pids), N);
        {Ref, leave, _Group, Pids} -> pg_count(Ref, Seen - length(Pids), N)
    end.

pg_join(Peer, N) ->
    Members = [spawn(fun idle/0) || _ <- lists:seq(1, N)],
    Group = {bench, erlang:unique_integer([positive])},
    spawn(Peer, ?MODULE, pg_watch, [self(), Group, N]),
    receive {pg_watching, Group} -> ok end,
    T0 = now_ns(),
    [ok = pg:join(Group, Pid) || Pid <- Members],
    Local = secs(T0),
    receive {pg_seen, Group} -> ok end,
    Total = secs(T0),
    [exit(Pid, kill) || Pid <- Members],
    [{ms, Total * 1000}, {local_ms, Local * 1000}].

global_register(Peers, N) ->
    [pong = net_adm:ping(P) || P <- Peers],
    wait_mesh(Peers, 500),
    U = erlang:unique_integer([positive]),
    Owners = [{{bench, U, I}, spawn(fun idle/0)} || I <- lists:seq(1, N)],
    T0 = now_ns(),
    Lat = [begin
               T = now_ns(),
               yes = global:register_name(Name, Pid),
               now_ns() - T
           end || {Name, Pid} <- Owners],
    Elapsed = secs(T0),
    [begin global:unregister_name(Name), exit(Pid, kill) end || {Name, Pid} <- Owners],
    latency(Lat, Elapsed).

wait_mesh(_Peers, 0) -> error(no_mesh);
wait_mesh(Peers, Tries) ->
    Ok = length(nodes()) >= 2 andalso
        lists:all(fun(P) -> length(rpc:call(P, erlang, nodes, [])) >= 2 end, Peers),
    case Ok of
        true -> global:sync();
        false -> timer:sleep(10), wait_mesh(Peers, Tries - 1)
    end.

spawn_rate(N) ->
    garbage_collect(),
    Mem0 = erlang:memory(total),
    T0 = now_ns(),
    Pids = [spawn(fun idle/0) || _ <- lists:seq(1, N)],
    Elapsed = secs(T0),
    Mem1 = erlang:memory(total),
    [exit(P, kill) || P <- Pids],
    [{rate, N / Elapsed}, {kib, (Mem1 - Mem0) / N / 1024}, {reached, N}].

max_procs(N) ->
    T0 = now_ns(),
    Pids = spawn_until(N, []),
    Elapsed = secs(T0),
    Reached = length(Pids),
    [exit(P, kill) || P <- Pids],
    [{reached, Reached}, {rate, Reached / Elapsed}].

spawn_until(0, Acc) -> Acc;
spawn_until(N, Acc) ->
    try spawn(fun idle/0) of
        Pid -> spawn_until(N - 1, [Pid | Acc])
    catch error:system_limit -> Acc
    end.
