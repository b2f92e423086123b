use super::*;

#[test]
fn a_hostfile_lists_exactly_the_processes() {
    let text = "# the cluster\n127.0.0.1:2101\n\n  127.0.0.1:2102 \n";
    assert_eq!(
        parse_hostfile(text, 2).unwrap(),
        ["127.0.0.1:2101", "127.0.0.1:2102"]
    );
    let short = parse_hostfile(text, 3).unwrap_err();
    assert!(
        short.contains("lists 2 addresses, and --processes is 3"),
        "{short}"
    );
    for (bad, says) in [
        ("127.0.0.1\n", "not host:port"),
        ("127.0.0.1:0\n", "port must be"),
        ("127.0.0.1:99999\n", "port must be"),
        (":2101\n", "no host"),
        ("a:1\na:1\n", "listed twice"),
    ] {
        let e = parse_hostfile(bad, 2).unwrap_err();
        assert!(e.contains(says), "{bad:?}: {e}");
        assert!(e.starts_with("line "), "{e}");
    }
}

#[test]
fn identities_out_of_range_are_refused() {
    let two = vec!["a:1".to_owned(), "b:1".to_owned()];
    assert!(Cluster::new(1, two.clone()).is_ok());
    let e = Cluster::new(2, two).unwrap_err().to_string();
    assert!(e.contains("--process 2 is out of range"), "{e}");
    assert!(Cluster::new(0, vec!["a:1".into()]).is_err());
    let c = Cluster::new(0, vec!["host-a:2101".into(), "[::1]:2102".into()]).unwrap();
    assert_eq!((c.host_of(0), c.host_of(1)), ("host-a", "[::1]"));
}

fn hello(process: usize, workers: usize) -> Hello {
    Hello {
        version: "1".into(),
        process,
        processes: 2,
        workers,
        settings: vec![("command".into(), "serve".into())],
        http: None,
    }
}

fn free_ports() -> Vec<String> {
    (0..2)
        .map(|_| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        })
        .collect()
}

#[test]
fn two_processes_join_and_share_the_plan() {
    let addresses = free_ports();
    let second = {
        let addresses = addresses.clone();
        std::thread::spawn(move || {
            let c = Cluster::new(1, addresses).unwrap();
            let mut link = Link::join(&c, hello(1, 2), Duration::from_secs(10)).unwrap();
            link.share_plan::<Vec<i32>>(None).unwrap()
        })
    };
    let c = Cluster::new(0, addresses).unwrap();
    let mut link = Link::join(&c, hello(0, 2), Duration::from_secs(10)).unwrap();
    assert_eq!(link.members().len(), 2);
    assert_eq!(link.share_plan(Some(vec![1, 2, 3])).unwrap(), [1, 2, 3]);
    assert_eq!(second.join().unwrap(), [1, 2, 3]);
}

#[test]
fn mismatched_workers_are_named_on_both_sides() {
    let addresses = free_ports();
    let second = {
        let addresses = addresses.clone();
        std::thread::spawn(move || {
            let c = Cluster::new(1, addresses).unwrap();
            Link::join(&c, hello(1, 3), Duration::from_secs(10))
                .unwrap_err()
                .to_string()
        })
    };
    let c = Cluster::new(0, addresses).unwrap();
    let here = Link::join(&c, hello(0, 2), Duration::from_secs(10))
        .unwrap_err()
        .to_string();
    let there = second.join().unwrap();
    assert!(
        here.contains("it runs --workers 3, this process --workers 2"),
        "{here}"
    );
    assert!(
        there.contains("it runs --workers 2, this process --workers 3"),
        "{there}"
    );
}

#[test]
fn a_port_in_use_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addresses = vec![
        taken.local_addr().unwrap().to_string(),
        "127.0.0.1:1".into(),
    ];
    let c = Cluster::new(0, addresses).unwrap();
    let e = Link::join(&c, hello(0, 1), Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot listen on") && e.contains("line 1 of"),
        "{e}"
    );
}

#[test]
fn a_missing_process_times_out_naming_it() {
    let addresses = free_ports();
    let c = Cluster::new(0, addresses.clone()).unwrap();
    let e = Link::join(&c, hello(0, 1), Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("process 1 at {} did not join", addresses[1])),
        "{e}"
    );
}
