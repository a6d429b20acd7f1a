//! Synthetic networks with deterministic pseudo-random weights, built
//! directly in the IR: fixtures for benchmarks and for tests of later stages
//! that need a realistically shaped graph without a trained model.

use ir::{BatchNorm, Conv2d, Graph, IrError, Linear, NodeId, Op, Pads2d, Tensor};

/// A small deterministic generator (SplitMix64); not for cryptography.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// A tensor of values uniform in `[-a, a)`.
    pub fn tensor(&mut self, shape: Vec<usize>, a: f64) -> Tensor {
        let n = ir::numel(&shape);
        let data = (0..n).map(|_| self.uniform(-a, a) as f32).collect();
        Tensor { shape, data }
    }
}

struct Builder {
    g: Graph,
    rng: SplitMix64,
}

impl Builder {
    /// 3×3 (or 1×1) convolution without bias, He-uniform weights.
    fn conv(
        &mut self,
        name: &str,
        x: NodeId,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Result<NodeId, IrError> {
        let a = (6.0 / (cin * k * k) as f64).sqrt();
        let weight = self.rng.tensor(vec![cout, cin, k, k], a);
        self.g.add(
            name,
            Op::Conv2d(Conv2d {
                weight,
                bias: None,
                stride: [stride; 2],
                pads: Pads2d::same(k / 2),
                dilation: [1, 1],
                group: 1,
            }),
            &[x],
        )
    }

    /// Batch norm with statistics near the identity map.
    fn bn(&mut self, name: &str, x: NodeId, c: usize) -> Result<NodeId, IrError> {
        let mut around = |centre: f64, spread: f64| {
            let data = (0..c)
                .map(|_| self.rng.uniform(centre - spread, centre + spread) as f32)
                .collect();
            Tensor {
                shape: vec![c],
                data,
            }
        };
        let bn = BatchNorm {
            scale: around(1.0, 0.2),
            bias: around(0.0, 0.1),
            mean: around(0.0, 0.1),
            var: around(1.0, 0.2),
            epsilon: 1e-5,
        };
        self.g.add(name, Op::BatchNorm(bn), &[x])
    }
}

/// A CIFAR-style ResNet-20 (He et al. 2016, option B shortcuts: 1×1
/// convolution + batch norm where the shape changes): a 3×3 stem to 16
/// channels, three stages of three basic blocks at 16, 32 and 64 channels
/// (stride 2 at the start of stages 2 and 3), global average pooling and a
/// linear classifier. `input` is `[C, H, W]`; weights are pseudo-random
/// from `seed`.
pub fn resnet20(input: [usize; 3], classes: usize, seed: u64) -> Result<Graph, IrError> {
    let mut b = Builder {
        g: Graph::new("resnet20"),
        rng: SplitMix64::new(seed),
    };
    let [c, h, w] = input;
    let x = b.g.add_input("input", vec![1, c, h, w])?;
    let mut cur = b.conv("stem_conv", x, c, 16, 3, 1)?;
    cur = b.bn("stem_bn", cur, 16)?;
    cur = b.g.add("stem_relu", Op::Relu, &[cur])?;
    let mut cin = 16;
    for (stage, cout) in [16usize, 32, 64].into_iter().enumerate() {
        for block in 0..3 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let p = format!("s{}b{}", stage + 1, block + 1);
            let mut y = b.conv(&format!("{p}_conv1"), cur, cin, cout, 3, stride)?;
            y = b.bn(&format!("{p}_bn1"), y, cout)?;
            y = b.g.add(format!("{p}_relu1"), Op::Relu, &[y])?;
            y = b.conv(&format!("{p}_conv2"), y, cout, cout, 3, 1)?;
            y = b.bn(&format!("{p}_bn2"), y, cout)?;
            let skip = if stride != 1 || cin != cout {
                let s = b.conv(&format!("{p}_down"), cur, cin, cout, 1, stride)?;
                b.bn(&format!("{p}_down_bn"), s, cout)?
            } else {
                cur
            };
            let sum = b.g.add(format!("{p}_add"), Op::Add, &[y, skip])?;
            cur = b.g.add(format!("{p}_relu2"), Op::Relu, &[sum])?;
            cin = cout;
        }
    }
    let pooled = b.g.add("gap", Op::GlobalAveragePool, &[cur])?;
    let flat = b.g.add("flatten", Op::Flatten { axis: 1 }, &[pooled])?;
    let a = (1.0 / cin as f64).sqrt();
    let weight = b.rng.tensor(vec![classes, cin], a);
    let bias = Some(b.rng.tensor(vec![classes], a));
    let logits =
        b.g.add("fc", Op::Linear(Linear { weight, bias }), &[flat])?;
    b.g.set_outputs(vec![logits]);
    Ok(b.g)
}

/// LeNet-5 for 28×28 greyscale input (the Fashion-MNIST variant: 5×5
/// convolutions to 6 and 16 channels, the first padded by 2, each followed
/// by ReLU and 2×2 max-pooling, then linear layers 400→120→84→`classes`
/// with ReLUs); 61,706 parameters for 10 classes. Weights are pseudo-random
/// from `seed`.
pub fn lenet5(classes: usize, seed: u64) -> Result<Graph, IrError> {
    let mut rng = SplitMix64::new(seed);
    let mut g = Graph::new("lenet5");
    let x = g.add_input("input", vec![1, 1, 28, 28])?;
    let mut cur = x;
    for (i, (cin, cout, pad)) in [(1usize, 6usize, 2usize), (6, 16, 0)]
        .into_iter()
        .enumerate()
    {
        let a = (6.0 / (cin * 25) as f64).sqrt();
        let conv = Conv2d {
            weight: rng.tensor(vec![cout, cin, 5, 5], a),
            bias: Some(rng.tensor(vec![cout], 0.1)),
            stride: [1, 1],
            pads: Pads2d::same(pad),
            dilation: [1, 1],
            group: 1,
        };
        cur = g.add(format!("conv{}", i + 1), Op::Conv2d(conv), &[cur])?;
        cur = g.add(format!("relu{}", i + 1), Op::Relu, &[cur])?;
        let pool = ir::Pool2d {
            kernel: [2, 2],
            stride: [2, 2],
            pads: Pads2d::default(),
        };
        cur = g.add(format!("pool{}", i + 1), Op::MaxPool(pool), &[cur])?;
    }
    cur = g.add("flatten", Op::Flatten { axis: 1 }, &[cur])?;
    let dims = [400, 120, 84, classes];
    for i in 0..3 {
        let a = (6.0 / dims[i] as f64).sqrt();
        let l = Linear {
            weight: rng.tensor(vec![dims[i + 1], dims[i]], a),
            bias: Some(rng.tensor(vec![dims[i + 1]], 0.1)),
        };
        cur = g.add(format!("fc{}", i + 1), Op::Linear(l), &[cur])?;
        if i < 2 {
            cur = g.add(format!("fc_relu{}", i + 1), Op::Relu, &[cur])?;
        }
    }
    g.set_outputs(vec![cur]);
    Ok(g)
}
